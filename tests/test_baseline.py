"""The DoG baseline on a small easy simulated dataset: beats an empty and a random submission."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryokit.baseline import (
    BaselineConfig,
    calibrate,
    calibrate_candidates,
    detect_candidates,
    normalise_robust,
    predict,
)
from cryokit.cli import main
from cryokit.io import KaggleSource, open_run_tomogram, read_solution
from cryokit.io.submission import read_submission
from cryokit.metric import score
from cryokit.particles import PARTICLE_NAMES
from cryokit.postprocess import PICK_SCORE_COLUMNS
from cryokit.synth import config_for_difficulty, simulate_dataset

SHAPE_ZYX = (64, 256, 256)


@pytest.fixture(scope="module")
def easy_data(tmp_path_factory):
    """One calibration run and one held-out run, easy, about seven particles of each type."""
    root = tmp_path_factory.mktemp("baseline")
    config = config_for_difficulty(
        "easy",
        shape_zyx=SHAPE_ZYX,
        counts={n: 10 for n in PARTICLE_NAMES},
        scale_counts_to_shape=False,
        n_debris=(60, 60),
        n_vesicles=(1, 1),
        ice_thickness_fraction=(0.7, 0.85),
    )
    simulate_dataset(root / "calibration", 1, seed=0, config=config, progress=False)
    simulate_dataset(root / "held_out", 1, seed=1, config=config, progress=False)
    calibration = calibrate(KaggleSource(root / "calibration"), progress=False)
    return root, calibration


def test_calibration_gives_one_threshold_and_blob_size_per_class(easy_data):
    _, calibration = easy_data
    assert set(calibration.thresholds) == set(calibration.body_fractions) == set(PARTICLE_NAMES)
    assert all(f in BaselineConfig().body_fractions for f in calibration.body_fractions.values())
    assert math.isfinite(calibration.thresholds["ribosome"])
    table = calibration.table()
    assert list(table["particle_type"]) == list(PARTICLE_NAMES) and table["train_fbeta"].between(0, 1).all()


def test_baseline_beats_empty_and_random_submissions(easy_data):
    root, calibration = easy_data
    solution = read_solution(root / "held_out", "train")
    picks = predict(KaggleSource(root / "held_out"), calibration, progress=False)
    assert list(picks.columns) == PICK_SCORE_COLUMNS
    # Angstrom, inside the volume: x and y up to 256 voxels (~2563 A), z up to 64 voxels (~641 A).
    extent_xyz = np.array(SHAPE_ZYX[::-1]) * 10.0125
    assert np.all(picks[["x", "y", "z"]].to_numpy() >= -1) and np.all(picks[["x", "y", "z"]].to_numpy() <= extent_xyz)
    rng = np.random.default_rng(0)
    random = picks.assign(**{axis: rng.uniform(0, extent, len(picks)) for axis, extent in zip("xyz", extent_xyz)})
    baseline_score = score(solution, picks)
    assert score(solution, picks.iloc[:0]) == 0.0
    assert baseline_score > score(solution, random) + 0.2
    assert baseline_score > 0.25


def test_calibration_takes_the_exact_f4_optimum_and_the_better_blob_size():
    solution = pd.DataFrame({"experiment": "r", "particle_type": "ribosome", "x": [0.0, 1000.0], "y": 0.0, "z": 0.0})
    rows = {"experiment": "r", "particle_type": "ribosome", "y": 0.0, "z": 0.0}
    candidates = pd.concat(
        [
            # blob size 0.5: both references found at scores 0.9 and 0.5, a false positive at 0.7
            pd.DataFrame({**rows, "x": [0.0, 1000.0, 3000.0], "score": [0.9, 0.5, 0.7], "body_fraction": 0.5}),
            # blob size 0.8: only one reference found
            pd.DataFrame({**rows, "x": [0.0, 3000.0], "score": [0.9, 0.8], "body_fraction": 0.8}),
        ],
        ignore_index=True,
    )
    calibration = calibrate_candidates(candidates, solution, BaselineConfig(body_fractions=(0.5, 0.8)))
    assert calibration.body_fractions["ribosome"] == 0.5
    # Keeping all three (P 2/3, R 1) beats keeping the two above 0.7 (P 1/2, R 1/2): the cut sits below 0.5.
    assert 0.0 < calibration.thresholds["ribosome"] <= 0.5
    assert calibration.train_fbeta["ribosome"] == pytest.approx(17 * (2 / 3) / (16 * (2 / 3) + 1))
    assert calibration.thresholds["apo-ferritin"] == math.inf  # no references: never predicted


def test_candidates_and_normalisation_on_a_volume(easy_data):
    root, _ = easy_data
    tomogram = open_run_tomogram(root / "held_out", "train", "TS_sim_1_0", "denoised", 1)
    normalised = normalise_robust(tomogram.read())
    assert abs(np.median(normalised)) < 0.01 and np.percentile(normalised, 99) - np.percentile(normalised, 1) < 1.2
    candidates = detect_candidates(
        tomogram.read(), tomogram.voxel_spacing_angstrom_zyx, "TS_sim_1_0", {"ribosome": 0.8}
    )
    assert set(candidates["particle_type"]) == {"ribosome"} and (candidates["body_fraction"] == 0.8).all()
    assert candidates["score"].is_monotonic_decreasing
    assert np.all(normalise_robust(np.ones((4, 4, 4))) == 0)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="polarity"):
        BaselineConfig(polarity=0)
    with pytest.raises(ValueError, match="body_fractions"):
        BaselineConfig(body_fractions=())


def test_cli_baseline(easy_data, tmp_path, capsys):
    root, _ = easy_data
    out = tmp_path / "submission.csv"
    assert (
        main(
            [
                "baseline",
                "--data",
                str(root / "held_out"),
                "--split",
                "train",
                "--out",
                str(out),
                "--calibrate-on",
                str(root / "calibration" / "train"),
            ]
        )
        == 0
    )
    submission = read_submission(out)
    assert list(submission.columns) == ["id", "experiment", "particle_type", "x", "y", "z"] and len(submission)
    assert "threshold" in capsys.readouterr().out
    assert main(["baseline", "--data", str(root / "held_out"), "--split", "test", "--out", str(out)]) == 2
