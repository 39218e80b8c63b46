"""A real (tiny) study: trials train with ``fit``, nest in MLflow, write a best config that ``cryokit train``
reads back; its checkpoint then shows that thresholds saved by the panel change what ``cryokit predict`` writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryokit.cli import main
from cryokit.config import apply_overrides, load_config, to_dict
from cryokit.demo.fixtures import TINY_SPACE, tiny_config, tiny_dataset
from cryokit.io import read_solution
from cryokit.io.candidates import read_candidates
from cryokit.io.submission import read_submission
from cryokit.tuning.space import load_space
from cryokit.tuning.study import best_config, run_study
from cryokit.widgets import ThresholdPanel


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    runs = tiny_dataset(root / "data", n_runs=3, seed=0)
    base = tiny_config(root / "data", runs, root / "unused", epochs=2, tracking=True)
    study = run_study(
        "tiny", base, n_trials=2, space=load_space(narrowing=TINY_SPACE), out_dir=root / "study", pruner="none", seed=0
    )
    return study, root, runs


def test_trials_are_mlflow_runs_nested_under_the_study_run(tiny_study):
    from mlflow.tracking import MlflowClient

    study, root, _ = tiny_study
    client = MlflowClient(f"sqlite:///{root / 'study' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cryokit").experiment_id])
    parent = [r for r in runs if r.info.run_name == "study-tiny"]
    assert len(parent) == 1 and parent[0].info.run_id == study.user_attrs["mlflow_run_id"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert sorted(children) == ["trial-0", "trial-1"]
    for trial in study.trials:
        run = children[f"trial-{trial.number}"]
        assert float(run.data.params["train.lr"]) == pytest.approx(trial.params["train.lr"])
        curve = client.get_metric_history(run.info.run_id, "val_score")
        assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [1, 2]  # one point per epoch
        assert max(m.value for m in curve) == pytest.approx(trial.value)
    assert parent[0].data.metrics["best_value"] == pytest.approx(study.best_value)


def test_best_config_file_round_trips_through_load_config(tiny_study):
    study, root, _ = tiny_study
    path = root / "study" / "best_config.yaml"
    loaded = load_config(path)
    assert loaded == best_config(study, root / "study" / "best")
    best = study.best_trial
    assert loaded.train.lr == best.params["train.lr"]
    assert list(loaded.model.channels) == json.loads(best.params["model.channels"])
    assert loaded.augment.noise_std == best.params["augment.noise_std"]
    trial_config = to_dict(best_config(study))
    assert {**to_dict(loaded), "train": {}} == {**trial_config, "train": {}}  # all but the output folder
    assert "cryokit train --config best_config.yaml" in path.read_text()


def test_non_finite_loss_fails_fit(tiny_study):
    from cryokit.training.loop import fit

    study, root, _ = tiny_study
    config = apply_overrides(
        best_config(study, root / "nan"),
        {"train.lr": 1e30, "train.grad_clip": 1e30, "train.epochs": 1, "tracking.enabled": False},
    )
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        fit(config, progress=False)


def _predict(checkpoint, root, run, out, *extra) -> None:
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(root),
                "--split",
                "train",
                "--runs",
                run,
                "--out",
                str(out),
                "--device",
                "cpu",
                *extra,
            ]
        )
        == 0
    )


def test_thresholds_from_the_panel_change_what_predict_writes(tiny_study, tmp_path):
    study, root, runs = tiny_study
    checkpoint = root / "study" / "trials" / f"{study.best_trial.number:04d}" / "best.pt"
    _predict(checkpoint, root / "data", runs[-1], tmp_path / "candidates.csv", "--keep-scores")
    _predict(checkpoint, root / "data", runs[-1], tmp_path / "default.csv")
    candidates = read_candidates(tmp_path / "candidates.csv")
    panel = ThresholdPanel(
        candidates, read_solution(root / "data", "train", [runs[-1]]), out_path=tmp_path / "saved.json"
    )
    busiest = candidates["particle_type"].value_counts().index[0]
    panel.set_threshold(busiest, float(candidates.loc[candidates["particle_type"] == busiest, "score"].median()))
    saved = panel.save()
    _predict(checkpoint, root / "data", runs[-1], tmp_path / "tuned.csv", "--thresholds", str(saved))
    default, tuned = read_submission(tmp_path / "default.csv"), read_submission(tmp_path / "tuned.csv")
    assert not default[["particle_type", "x"]].equals(tuned[["particle_type", "x"]])
    # exactly the candidates that reach their class's threshold, and nothing else
    threshold = candidates["particle_type"].map(panel.thresholds).fillna(np.inf)
    expected = candidates[candidates["score"] >= threshold]
    key = ["experiment", "particle_type", "x", "y", "z"]
    assert sorted(map(tuple, tuned[key].round(6).values)) == sorted(map(tuple, expected[key].round(6).values))
    by_class = tuned.merge(candidates, on=key)
    assert (by_class["score"] >= by_class["particle_type"].map(panel.thresholds)).all()
    assert len(by_class) == len(tuned) and isinstance(by_class, pd.DataFrame)
