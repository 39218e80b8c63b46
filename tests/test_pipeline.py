"""The main job end to end on a small simulated dataset: every file it promises, scores for both methods."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from cryokit.config import replace
from cryokit.demo.pipeline import DEMO_PATCHES_PER_EPOCH, DEMO_TTA, DemoConfig, run_demo
from cryokit.ensemble import load_ensemble
from cryokit.io import read_solution
from cryokit.io.submission import read_submission
from cryokit.metric import score


def _quick_demo(tmp_path, epochs: int, **changes) -> DemoConfig:
    """The quick demo on 64 x 160 x 160 volumes for ``epochs`` epochs, not tracked, on the fixed domain: the
    baseline's check below is calibrated on it (a DoG calibrated on two tiny randomized runs can miss every
    particle of a third, differently imaged one)."""
    changes = {"domain": "fixed", **changes}
    config = DemoConfig.quick_defaults(out_dir=str(tmp_path / "demo"), shape_zyx=(64, 160, 160), **changes)
    training = config.training
    return replace(
        config,
        training=replace(
            training, train=replace(training.train, epochs=epochs), tracking=replace(training.tracking, enabled=False)
        ),
    )


def test_demo_writes_submission_scores_and_plots(tmp_path):
    result = run_demo(_quick_demo(tmp_path, epochs=1))
    assert set(result.scores) == {"DoG baseline", "U-Net"}
    submission = read_submission(result.files["submission"])
    # The reported scores are the metric's on the files written: the U-Net's submission and scores.csv.
    solution = read_solution(tmp_path / "demo" / "data", "train", ["TS_sim_1_0"])
    assert score(solution, submission) == pytest.approx(result.scores["U-Net"], abs=1e-12)
    written = pd.read_csv(result.files["scores_csv"])
    for method, table in result.tables.items():
        rows = written[written["method"] == method].reset_index(drop=True)
        assert np.allclose(rows["fbeta"], table["fbeta"]) and list(rows["particle_type"]) == list(
            table["particle_type"]
        )
    assert result.scores["DoG baseline"] > 0.05  # the baseline finds something even on this small volume
    assert set(submission["experiment"]) <= {"TS_sim_1_0"}
    summary = json.loads(result.files["summary"].read_text())
    assert summary["heldout_runs"] == ["TS_sim_1_0"] and summary["val_runs"] == ["TS_sim_0_2"]
    assert summary["training_config"]["data"]["train_runs"] == ["TS_sim_0_0", "TS_sim_0_1"]
    assert summary["tta"] == {"unet": "none"} and result.files["thresholds_unet"].is_file()  # quick: no TTA
    record = tmp_path / "demo" / "data" / "train" / "static" / "ExperimentRuns" / "TS_sim_1_0" / "simulation.json"
    assert json.loads(record.read_text())["domain"] == "fixed"  # DemoConfig.domain reaches the simulator
    for key in ("scores_png", "predictions_png", "curves_png"):
        image = matplotlib.image.imread(result.files[key])
        assert image.shape[0] > 300 and np.std(image[..., :3]) > 0.02, key
    table = result.tables["U-Net"]
    assert list(table["particle_type"])[:2] == ["apo-ferritin", "beta-amylase"]


def test_demo_with_two_models_scores_each_and_submits_their_ensemble(tmp_path):
    # With the full demo's TTA per family: both flipped.
    result = run_demo(_quick_demo(tmp_path, epochs=1, models=("unet", "yolo3d"), tta=dict(DEMO_TTA)))
    assert set(result.scores) == {"DoG baseline", "U-Net", "YOLO3D detector", "ensemble"}
    summary = json.loads(result.files["summary"].read_text())
    assert summary["submission"] == "ensemble"
    assert summary["training_configs"]["yolo3d"]["model"]["name"] == "yolo3d"
    assert summary["training_configs"]["yolo3d"]["target"]["kind"] == "detection"
    # The detector gets its share of the recipe's patches (DEMO_PATCHES_PER_EPOCH) and its half-width backbone.
    unet_patches = summary["training_configs"]["unet"]["patch"]["patches_per_epoch"]
    share = DEMO_PATCHES_PER_EPOCH["yolo3d"] / DEMO_PATCHES_PER_EPOCH["unet"]
    assert summary["training_configs"]["yolo3d"]["patch"]["patches_per_epoch"] == round(unet_patches * share)
    assert summary["training_configs"]["yolo3d"]["model"]["backbone_width"] == 32
    solution = read_solution(tmp_path / "demo" / "data", "train", ["TS_sim_1_0"])
    assert score(solution, read_submission(result.files["submission"])) == pytest.approx(result.scores["ensemble"])
    assert (tmp_path / "demo" / "train_yolo3d" / "best.pt").is_file() and result.files["ensemble"].is_file()
    # Each model's score is that of its own picks, as `cryokit predict` writes them alone with the demo's TTA
    # for its family and the thresholds the demo tuned on the validation run with it.
    from cryokit.inference.predict import predict_runs
    from cryokit.thresholds import load_thresholds

    assert summary["tta"] == {"unet": "flips", "yolo3d": "flips"}  # DEMO_TTA
    assert load_ensemble(result.files["ensemble"]).tta == ("flips", "flips")
    for model, label, folder in (("unet", "U-Net", "train"), ("yolo3d", "YOLO3D detector", "train_yolo3d")):
        alone, _ = predict_runs(
            [str(tmp_path / "demo" / folder / "best.pt")],
            str(tmp_path / "demo" / "data"),
            "train",
            ["TS_sim_1_0"],
            summary["tta"][model],
            load_thresholds(result.files[f"thresholds_{model}"]),
            progress=False,
        )
        assert score(solution, alone) == pytest.approx(result.scores[label], abs=1e-12), label
    assert set(summary["seconds_per_tomogram"]) == {"U-Net", "YOLO3D detector"}


def test_the_demo_simulates_the_randomized_family_and_the_quick_demo_the_fixed_domain():
    from cryokit.cli import build_parser

    assert DemoConfig().domain == "randomized" and DemoConfig.quick_defaults().domain == "fixed"
    assert DemoConfig().tta == DEMO_TTA == {"unet": "flips", "yolo3d": "flips"}
    assert DemoConfig.quick_defaults().tta == {}
    assert DemoConfig().training.augment.gamma_p > 0 and DemoConfig().training.augment.wedge_p > 0
    assert build_parser().parse_args(["demo"]).domain is None  # None: the configuration's own default
