"""The cryokit command end to end: train from a YAML file, predict with TTA, score; clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import make_blob_layout

from cryokit.cli import main
from cryokit.io.submission import read_submission

CONFIG = """
data: {val_runs: [TS_c]}
patch: {size_zyx: [16, 32, 32], batch_size: 2, patches_per_epoch: 16, inference_batch_size: 4}
model: {channels: [8, 16], strides: [2], num_res_units: 0}
augment: {rotate_degrees: 0, scale_fraction: 0, elastic_p: 0}
train: {epochs: 1, lr: 0.01, warmup_steps: 1}
tracking: {enabled: false}
"""


def test_train_predict_score(tmp_path, capsys):
    make_blob_layout(tmp_path / "data", runs=("TS_a", "TS_b", "TS_c"))
    (tmp_path / "run.yaml").write_text(CONFIG)
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp_path / "run.yaml"),
                "--data",
                str(tmp_path / "data"),
                "--out",
                str(tmp_path / "run"),
                "--set",
                "train.epochs=4",
            ]
        )
        == 0
    )
    assert "best validation score" in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(tmp_path / "run" / "best.pt"),
                "--data",
                str(tmp_path / "data"),
                "--split",
                "train",
                "--runs",
                "TS_c",
                "--tta",
                "flips",
                "--out",
                str(tmp_path / "sub.csv"),
            ]
        )
        == 0
    )
    assert "s per tomogram" in capsys.readouterr().out
    submission = read_submission(tmp_path / "sub.csv")
    assert set(submission["experiment"]) <= {"TS_c"} and list(submission.columns)[:3] == [
        "id",
        "experiment",
        "particle_type",
    ]
    assert main(["score", "--solution", str(tmp_path / "data"), "--submission", str(tmp_path / "sub.csv")]) == 0
    captured = capsys.readouterr()
    assert "no submitted rows for 2 run(s) of the solution (TS_a, TS_b)" in captured.err
    assert (
        main(
            ["score", "--solution", str(tmp_path / "data"), "--submission", str(tmp_path / "sub.csv"), "--runs", "TS_c"]
        )
        == 0
    )
    scored = capsys.readouterr()
    assert "ribosome" in scored.out and scored.out.strip().splitlines()[-1].startswith("score ") and not scored.err
    # Fine-tuning from that checkpoint: a model of other widths is refused, naming the tensors.
    fine_tune = ["train", "--config", str(tmp_path / "run.yaml"), "--data", str(tmp_path / "data")]
    fine_tune += ["--out", str(tmp_path / "tuned"), "--init-from", str(tmp_path / "run" / "best.pt")]
    assert main(fine_tune + ["--set", "model.channels=[4,8]"]) == 2
    error = capsys.readouterr().err
    assert "best.pt" in error and "model.0.conv.weight: checkpoint (8, 1, 3, 3, 3), model (4, 1, 3, 3, 3)" in error


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "{root}", "--set", "train.lrr=1"], "unknown config key(s) train.lrr"),
        (["train", "--set", "train.lr=1"], "no data: pass --data ROOT"),
        (
            ["predict", "--checkpoint", "{root}/none.pt", "--data", "{root}", "--out", "{root}/x.csv"],
            "none.pt does not exist",
        ),
        (
            ["score", "--solution", "{root}/solution.csv", "--submission", "{root}/missing.csv"],
            "submission file not found",
        ),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    (tmp_path / "solution.csv").write_text("id,experiment,particle_type,x,y,z\n0,TS_a,ribosome,1,2,3\n")
    status = main([a.format(root=tmp_path) for a in argv])
    error = capsys.readouterr().err
    assert status == 2 and message in error and "Traceback" not in error


def test_ensemble_of_two_kinds_is_fitted_saved_and_used(tmp_path, capsys):
    make_blob_layout(tmp_path / "data", runs=("TS_a", "TS_b", "TS_c"))
    (tmp_path / "run.yaml").write_text(CONFIG)
    base = [
        "train",
        "--config",
        str(tmp_path / "run.yaml"),
        "--data",
        str(tmp_path / "data"),
        "--set",
        "train.epochs=3",
    ]
    assert main(base + ["--out", str(tmp_path / "s1")]) == 0
    assert main(base + ["--out", str(tmp_path / "s2"), "--set", "target.stride=2"]) == 0  # another kind: stride 2
    checkpoints = ["--checkpoint", str(tmp_path / "s1" / "best.pt"), "--checkpoint", str(tmp_path / "s2" / "best.pt")]
    data = ["--data", str(tmp_path / "data")]
    assert main(["ensemble", *checkpoints, *data, "--runs", "TS_c", "--out", str(tmp_path / "e.json")]) == 0
    assert "ensemble of 2 member(s)" in capsys.readouterr().out

    def score(*extra):
        out = tmp_path / f"sub{len(list(tmp_path.glob('sub*.csv')))}.csv"
        assert main(["predict", *extra, *data, "--split", "train", "--runs", "TS_c", "--out", str(out)]) == 0
        capsys.readouterr()
        assert main(["score", "--solution", str(tmp_path / "data"), "--submission", str(out), "--runs", "TS_c"]) == 0
        return float(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])

    alone = [score(*checkpoints[:2]), score(*checkpoints[2:])]
    together = score(*checkpoints, "--ensemble", str(tmp_path / "e.json"))
    assert max(alone) > 0.1 and together >= max(alone) - 1e-9  # on its fitting runs, never below its best member
    status = main(
        ["predict", *checkpoints[:2], *data, "--out", str(tmp_path / "x.csv"), "--ensemble", str(tmp_path / "e.json")]
    )
    error = capsys.readouterr().err
    assert status == 2 and "the ensemble file has 2 member(s)" in error and "1 group(s)" in error

    # A TTA per member: each group's candidates are its own with its TTA, and the ensemble records them.
    from cryokit.ensemble import load_ensemble
    from cryokit.inference.predict import group_candidates

    paths = [str(tmp_path / "s1" / "best.pt"), str(tmp_path / "s2" / "best.pt")]
    _, per_group = group_candidates(paths, str(tmp_path / "data"), "train", ["TS_c"], ["flips", "none"])
    _, [flipped] = group_candidates(paths[:1], str(tmp_path / "data"), "train", ["TS_c"], "flips")
    _, [plain] = group_candidates(paths[:1], str(tmp_path / "data"), "train", ["TS_c"], "none")
    assert [f.attrs["tta"] for f in per_group] == ["flips", "none"]
    pd.testing.assert_frame_equal(per_group[0], flipped)
    assert not flipped["score"].equals(plain["score"])  # the flips did change the first member's maps
    fitted = tmp_path / "e_tta.json"
    argv = ["ensemble", *checkpoints, *data, "--runs", "TS_c", "--out", str(fitted), "--tta", "flips", "none"]
    assert main(argv) == 0 and load_ensemble(fitted).tta == ("flips", "none")
    capsys.readouterr()
    with_its_tta = score(*checkpoints, "--ensemble", str(fitted))  # no --tta: the ensemble's own
    assert with_its_tta == score(*checkpoints, "--ensemble", str(fitted), "--tta", "flips", "none")
    predict = ["predict", *checkpoints, *data, "--split", "train", "--runs", "TS_c", "--out", str(tmp_path / "y.csv")]
    status = main([*predict, "--ensemble", str(fitted), "--tta", "none"])
    error = capsys.readouterr().err
    assert status == 2 and "fitted on candidates predicted with TTA flips, none" in error
    assert not (tmp_path / "y.csv").exists()


def test_ensemble_min_gain_references_and_peer_margin_default_to_the_library_values():
    from cryokit.cli import build_parser
    from cryokit.ensemble import DEFAULT_MIN_GAIN_REFERENCES, DEFAULT_PEER_MARGIN

    base = ["ensemble", "--checkpoint", "a.pt", "--data", "d", "--runs", "TS_a", "--out", "e.json"]
    assert build_parser().parse_args(base).min_gain_references == DEFAULT_MIN_GAIN_REFERENCES
    assert build_parser().parse_args([*base, "--min-gain-references", "0"]).min_gain_references == 0.0
    assert build_parser().parse_args(base).vote is True
    assert build_parser().parse_args([*base, "--no-vote"]).vote is False
    assert build_parser().parse_args(base).peer_margin == DEFAULT_PEER_MARGIN
    assert build_parser().parse_args([*base, "--peer-margin", "0.02"]).peer_margin == 0.02


def test_ensemble_threshold_scale_defaults_to_the_library_value_and_a_bad_one_is_refused_first(tmp_path, capsys):
    from cryokit.cli import build_parser, main
    from cryokit.thresholds import THRESHOLD_SCALE

    base = ["ensemble", "--checkpoint", "a.pt", "--data", str(tmp_path / "d"), "--runs", "TS_a", "--out", "e.json"]
    assert build_parser().parse_args(base).threshold_scale == THRESHOLD_SCALE
    # Refused before the (missing) data and checkpoint are looked at.
    assert main([*base, "--threshold-scale", "1.5"]) == 2
    assert "--threshold-scale must be in (0, 1], got 1.5" in capsys.readouterr().err
    assert main([*base, "--peer-margin", "-0.1"]) == 2
    assert "--peer-margin must be >= 0, got -0.1" in capsys.readouterr().err
