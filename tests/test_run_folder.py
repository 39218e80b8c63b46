"""Shared and interrupted work: checkpoints are data, a run folder is never silently replaced,
``--resume`` keeps the stored configuration, and best.pt carries its thresholds and validation table."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch
from conftest import blob_config, make_blob_layout

from cryokit.cli import main
from cryokit.config import replace, to_dict
from cryokit.thresholds import load_thresholds
from cryokit.training.checkpoint import load_checkpoint, load_model, save_checkpoint
from cryokit.training.loop import fit

RUNS = ("TS_a", "TS_b", "TS_c")


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    make_blob_layout(root, runs=RUNS)
    return root


@pytest.fixture(scope="module")
def trained(blob_root, tmp_path_factory):
    config = blob_config(blob_root, tmp_path_factory.mktemp("trained") / "run", epochs=1)
    return config, fit(config, progress=False)


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(blob_root, tmp_path, capsys):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    torch.save({"config": {}, "model": {}, "payload": _RunsAShellCommand(marker)}, crafted)
    with pytest.raises(ValueError, match=r"crafted.pt is not a cryokit checkpoint: .*could run code"):
        load_checkpoint(crafted)
    assert not marker.exists()
    args = ["predict", "--checkpoint", str(crafted), "--data", str(blob_root), "--split", "train"]
    assert main(args + ["--out", str(tmp_path / "s.csv"), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert (
        "crafted.pt is not a cryokit checkpoint" in error
        and "GLOBAL posix.system" in error
        and "could run code" in error
    )
    assert not marker.exists() and not (tmp_path / "s.csv").exists()


def test_trusted_legacy_checkpoints_load_only_when_asked(tmp_path, monkeypatch):
    legacy = tmp_path / "legacy.pt"
    with open(legacy, "wb") as handle:  # what cryokit 1 stored: a NumPy RNG state inside
        torch.save({"config": {}, "model": {}, "rng": {"numpy": ("MT19937", __import__("numpy").zeros(3))}}, handle)
    with pytest.raises(ValueError, match="CRYOKIT_TRUSTED_LEGACY_CHECKPOINTS=1"):
        load_checkpoint(legacy)
    assert load_checkpoint(legacy, trusted_legacy=True)["rng"]["numpy"][0] == "MT19937"
    monkeypatch.setenv("CRYOKIT_TRUSTED_LEGACY_CHECKPOINTS", "1")
    assert load_checkpoint(legacy)["rng"]["numpy"][0] == "MT19937"


def test_every_checkpoint_written_loads_with_weights_only(trained):
    config, result = trained
    for name in ("best.pt", "last.pt"):
        state = torch.load(result.out_dir / name, weights_only=True)  # raises on anything but plain data
        assert state["config"] == to_dict(config)
        assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    with pytest.raises(TypeError, match="checkpoint entry state.extra is a object"):
        save_checkpoint(result.out_dir / "x.pt", {"extra": object()})
    assert not (result.out_dir / "x.pt").exists()


def test_best_checkpoint_holds_its_thresholds_and_table_and_files_follow_it(trained):
    _, result = trained
    state = load_checkpoint(result.best_checkpoint)
    assert load_thresholds(result.out_dir / "thresholds.json") == state["thresholds"] == result.thresholds
    table = pd.read_csv(result.out_dir / "val_table.csv")
    assert table["particle_type"].tolist() == state["val_table"]["particle_type"]
    assert not list(result.out_dir.glob(".*tmp-*"))


def test_weights_that_do_not_match_the_config_name_the_file_and_tensor(trained, tmp_path):
    _, result = trained
    state = load_checkpoint(result.best_checkpoint)
    state["config"]["model"]["channels"] = [4, 8]
    save_checkpoint(tmp_path / "mismatch.pt", state)
    with pytest.raises(ValueError, match=r"mismatch.pt: its weights do not match its configuration: .*: checkpoint \("):
        load_model(tmp_path / "mismatch.pt")


def test_retraining_into_a_folder_with_a_run_is_refused(trained, blob_root):
    config, result = trained
    before = (result.out_dir / "best.pt").read_bytes()
    args = ["train", "--data", str(blob_root), "--out", str(result.out_dir), "--set", "train.epochs=1"]
    assert main(args) == 2
    assert (result.out_dir / "best.pt").read_bytes() == before
    with pytest.raises(FileExistsError, match=r"already holds a run \(best.pt, last.pt\).*--resume.*--overwrite"):
        fit(config, progress=False)


def test_overwrite_replaces_the_run(blob_root, tmp_path):
    config = blob_config(blob_root, tmp_path / "run", epochs=1)
    fit(config, progress=False)
    (tmp_path / "run" / "thresholds.json").write_text("{}")
    first = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    fit(replace(config, train=replace(config.train, seed=1)), progress=False, overwrite=True)
    second = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert (
        load_thresholds(tmp_path / "run" / "thresholds.json")
        == load_checkpoint(tmp_path / "run" / "best.pt")["thresholds"]
    )


def test_resume_without_a_checkpoint_is_an_error(blob_root, tmp_path, capsys):
    assert main(["train", "--data", str(blob_root), "--out", str(tmp_path / "empty"), "--resume"]) == 2
    error = capsys.readouterr().err
    assert "cannot resume" in error and "last.pt does not exist" in error
    assert not (tmp_path / "empty" / "best.pt").exists()
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        fit(blob_config(blob_root, tmp_path / "empty2", epochs=1), resume=True, progress=False)


def test_resume_uses_the_stored_config_and_refuses_contradictions(blob_root, tmp_path, capsys):
    config = blob_config(blob_root, tmp_path / "run", epochs=1)
    fit(config, progress=False)
    out = str(tmp_path / "run")
    assert main(["train", "--out", out, "--resume", "--set", "train.lr=0.5", "--set", "data.val_runs=TS_b"]) == 2
    error = capsys.readouterr().err
    assert "data.val_runs: stored ['TS_c'], given ['TS_b']" in error and "train.lr: stored" in error
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    # a kill between best.pt and its files left them stale: resuming rewrites them from best.pt
    (tmp_path / "run" / "thresholds.json").write_text("{}")
    (tmp_path / "run" / "val_table.csv").unlink()
    # the stored configuration is the one used: no --data, no --set, and it continues (1 epoch done of 1)
    assert main(["train", "--out", out, "--resume", "--set", "train.num_workers=0"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert load_thresholds(tmp_path / "run" / "thresholds.json") == best["thresholds"] != {}
    assert (
        pd.read_csv(tmp_path / "run" / "val_table.csv")["particle_type"].tolist() == best["val_table"]["particle_type"]
    )


def test_earlier_temporaries_are_cleaned_up(tmp_path):
    from cryokit.io.atomic import _HOST, atomic_write_text

    stale = tmp_path / ".out.txt.tmp-0000abcd"  # an old-style temporary left by a killed run
    stale.write_text("half")
    os.utime(stale, (0, 0))
    dead = tmp_path / f".out.txt.tmp-{_HOST}-999999999-0000abcd"
    dead.write_text("half")
    alive = tmp_path / f".out.txt.tmp-{_HOST}-{os.getpid()}-0000abcd"
    alive.write_text("being written")
    atomic_write_text(tmp_path / "out.txt", "whole")
    assert (tmp_path / "out.txt").read_text() == "whole"
    assert not stale.exists() and not dead.exists() and alive.exists()
