"""Bad input on the command line: wrong run selections, outputs that cannot be written, a GPU that is
not there, a damaged tomogram among many, picks outside their tomogram, the README's bundle example.
Each case: the exit status, the message, and the files left."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import blob_config, make_blob_layout

import cryokit.training.checkpoint
from cryokit.cli import main
from cryokit.io.layout import tomogram_path
from cryokit.io.picks import write_run_picks
from cryokit.io.submission import read_submission, write_submission
from cryokit.training.loop import fit

RUNS = ("TS_a", "TS_b", "TS_c")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input")
    make_blob_layout(base / "data", runs=RUNS)
    result = fit(blob_config(base / "data", base / "run", epochs=1), progress=False)
    return base, base / "data", result.best_checkpoint


def _predict(checkpoint, root, out, *extra):
    return main(
        ["predict", "--checkpoint", str(checkpoint), "--data", str(root), "--split", "train"]
        + list(extra)
        + ["--out", str(out), "--device", "cpu"]
    )


def test_score_refuses_unknown_or_empty_runs_naming_the_runs_that_exist(trained, tmp_path, capsys):
    _, root, _ = trained
    write_submission(
        pd.DataFrame({"experiment": ["TS_a"], "particle_type": ["ribosome"], "x": [1.0], "y": [1.0], "z": [1.0]}),
        tmp_path / "s.csv",
    )
    base = ["score", "--solution", str(root), "--submission", str(tmp_path / "s.csv")]
    assert main(base + ["--runs", "TS_typo"]) == 2
    error = capsys.readouterr().err
    assert "no run(s) TS_typo" in error and "TS_a, TS_b, TS_c" in error
    assert main(base + ["--runs"]) == 2
    assert "--runs" in (error := capsys.readouterr().err) and "names no runs" in error and "TS_a, TS_b, TS_c" in error
    assert main(base + ["--runs", "TS_a"]) == 0


def test_predict_refuses_unknown_or_empty_runs_and_writes_nothing(trained, tmp_path, capsys):
    _, root, checkpoint = trained
    assert _predict(checkpoint, root, tmp_path / "a.csv", "--runs") == 2
    assert "names no runs" in capsys.readouterr().err
    assert _predict(checkpoint, root, tmp_path / "b.csv", "--runs", "TS_a", "TS_nope") == 2
    error = capsys.readouterr().err
    assert "no run(s) TS_nope" in error and "TS_a, TS_b, TS_c" in error
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


def test_predict_checks_its_output_before_any_work(trained, tmp_path, capsys, monkeypatch):
    _, root, checkpoint = trained
    loads = []
    monkeypatch.setattr(cryokit.training.checkpoint, "load_model", lambda *a, **k: loads.append(a))
    (tmp_path / "folder").mkdir()
    assert _predict(checkpoint, root, tmp_path / "folder") == 2
    assert "is a folder: name the CSV file to write" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert _predict(checkpoint, root, tmp_path / "file" / "s.csv") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert loads == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_one_line(trained, tmp_path, capsys):
    _, root, checkpoint = trained
    code = main(
        [
            "predict",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(root),
            "--split",
            "train",
            "--out",
            str(tmp_path / "s.csv"),
            "--device",
            "cuda",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "no CUDA GPU here" in error and "--device cpu" in error
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(root),
                "--out",
                str(tmp_path / "s.csv"),
                "--device",
                "gpu",
            ]
        )
        == 2
    )
    assert "is not a device" in capsys.readouterr().err


def test_predict_on_error_skip_leaves_out_a_damaged_tomogram_and_says_so(trained, tmp_path, capsys):
    _, root, checkpoint = trained
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    level0 = tomogram_path(copy, "train", "TS_b", "denoised") / "0"
    next(p for p in sorted(level0.rglob("*")) if p.is_file() and not p.name.startswith(".")).unlink()
    assert _predict(checkpoint, copy, tmp_path / "stop.csv") == 2  # the default stops at the damage
    assert "chunk" in capsys.readouterr().err and not (tmp_path / "stop.csv").exists()
    assert _predict(checkpoint, copy, tmp_path / "s.csv", "--on-error", "skip") == 1
    captured = capsys.readouterr()
    assert "FAILED TS_b" in captured.err and "is missing" in captured.err and "1 of 3 run(s) failed" in captured.err
    assert "for 2 runs" in captured.out
    assert set(read_submission(tmp_path / "s.csv")["experiment"]) <= {"TS_a", "TS_c"}


def test_picks_outside_the_tomogram_warn_in_train_and_are_noted_in_score(trained, tmp_path, capsys, caplog):
    _, root, _ = trained
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    write_run_picks(
        copy,
        "train",
        "TS_a",
        {
            "apo-ferritin": np.array([[100.0, 100.0, 100.0], [-5.0, 10.0, 10.0]]),
            "ribosome": np.array([[1e6, 10.0, 10.0]]),
        },
    )
    from cryokit.data.dataset import PatchDataset
    from cryokit.io.source import KaggleSource
    from cryokit.models.build import build_dataset

    config = blob_config(copy, tmp_path / "run", epochs=1)
    with caplog.at_level(logging.WARNING, logger="cryokit.data.dataset"):
        dataset = build_dataset(config.data, config.patch, config.target, config.augment, ["TS_a", "TS_b"], 0)
    assert isinstance(dataset, PatchDataset)
    message = caplog.text
    assert "run TS_a: 2 of 3 picks lie outside the tomogram" in message
    assert "apo-ferritin.json: 1" in message and "ribosome.json: 1" in message
    assert len(dataset.runs[0].class_indices) == 1
    assert KaggleSource(copy).describe() in message
    write_submission(
        pd.DataFrame({"experiment": ["TS_a"], "particle_type": ["ribosome"], "x": [-3.0], "y": [1.0], "z": [1.0]}),
        tmp_path / "s.csv",
    )
    assert main(["score", "--solution", str(copy), "--submission", str(tmp_path / "s.csv"), "--runs", "TS_a"]) == 0
    error = capsys.readouterr().err
    assert "note: 2 solution pick(s) lie outside their tomogram" in error and "TS_a: 2" in error
    assert "note: 1 submission pick(s) lie outside" in error


def test_the_readme_bundle_example_with_two_best_pt_works(trained, tmp_path):
    base, root, checkpoint = trained
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        shutil.copy(checkpoint, tmp_path / "runs" / name / "best.pt")
    (tmp_path / "runs" / "a" / "thresholds.json").write_text('{"ribosome": 0.3}')
    args = ["kaggle", "bundle", "--checkpoints", str(tmp_path / "runs/a/best.pt"), str(tmp_path / "runs/b/best.pt")]
    args += ["--thresholds", str(tmp_path / "runs/a/thresholds.json"), "--out", str(tmp_path / "dist")]
    args += ["--dataset-slug", "someone/cryokit-models", "--tta", "flips", "--wheel-source", "installed"]
    assert main(args) == 0
    import json

    manifest = json.loads((tmp_path / "dist" / "dataset" / "cryokit_bundle.json").read_text())
    assert [c["file"] for c in manifest["checkpoints"]] == ["a-best.pt", "b-best.pt"]
    assert (tmp_path / "dist" / "dataset" / "a-best.pt").is_file() and (
        tmp_path / "dist" / "dataset" / "b-best.pt"
    ).is_file()
