"""The main job end to end on a small simulated dataset: every file it promises, scores for both methods."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np

from cryokit.config import replace
from cryokit.io.submission import read_submission
from cryokit.pipeline import DemoConfig, run_demo


def test_demo_writes_submission_scores_and_plots(tmp_path):
    config = DemoConfig.quick_defaults(out_dir=str(tmp_path / "demo"), shape_zyx=(64, 160, 160))
    training = config.training
    config = replace(
        config,
        training=replace(
            training, train=replace(training.train, epochs=1), tracking=replace(training.tracking, enabled=False)
        ),
    )
    result = run_demo(config)
    assert set(result.scores) == {"DoG baseline", "U-Net"}
    assert all(0.0 <= value <= 1.0 for value in result.scores.values())
    submission = read_submission(result.files["submission"])
    assert set(submission["experiment"]) <= {"TS_sim_1_0"}
    summary = json.loads(result.files["summary"].read_text())
    assert summary["heldout_runs"] == ["TS_sim_1_0"] and summary["val_runs"] == ["TS_sim_0_2"]
    assert summary["training_config"]["data"]["train_runs"] == ["TS_sim_0_0", "TS_sim_0_1"]
    for key in ("scores_png", "predictions_png", "curves_png"):
        image = matplotlib.image.imread(result.files[key])
        assert image.shape[0] > 300 and np.std(image[..., :3]) > 0.02, key
    table = result.tables["U-Net"]
    assert list(table["particle_type"])[:2] == ["apo-ferritin", "beta-amylase"]
