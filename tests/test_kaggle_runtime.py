"""The Kaggle runtime always writes a submission CSV: each failure injected, the CSV is still there,
with the picks of the runs that worked and the failure in the report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import cryokit.inference.device
import cryokit.io
import cryokit.kaggle.runtime as runtime
import cryokit.training.checkpoint
from cryokit.io.submission import SUBMISSION_COLUMNS, read_submission
from cryokit.kaggle.budget import TimeBudget

RUNS = ["TS_1", "TS_2"]


def _picks(run: str, x: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"experiment": [run, run], "particle_type": ["ribosome", "apo-ferritin"], "x": [x, 5.0], "y": [1.0, 2.0]}
        | {"z": [3.0, 4.0], "score": [0.9, 0.8]}
    )


@pytest.fixture
def fake(monkeypatch):
    """Checkpoints that load as stand-ins and runs that predict two picks each; ``broken`` chooses a failure."""
    broken: set[str] = set()

    def fail_if(name):
        if name in broken:
            raise RuntimeError(f"injected failure: {name}")

    def load_model(path, device):
        fail_if("checkpoint")
        return SimpleNamespace(path=path)

    def predict_run(groups, root, split, run, tta, thresholds, device, amp, **options):
        fail_if("run " + run)
        return _picks(run, np.nan) if f"nan {run}" in broken else _picks(run)

    def list_runs(root, split):
        fail_if("list_runs")
        return list(RUNS)

    def resolve_device(name):
        fail_if("device")
        return "cpu"

    def seconds_per_tomogram(self, plan):
        fail_if("projection")
        return 1.0

    monkeypatch.setattr(cryokit.training.checkpoint, "load_model", load_model)
    monkeypatch.setattr(runtime, "predict_run", predict_run)
    monkeypatch.setattr(runtime, "ensemble_groups", lambda loaded: [loaded])
    monkeypatch.setattr(cryokit.io, "list_runs", list_runs)
    monkeypatch.setattr(cryokit.inference.device, "resolve_device", resolve_device)
    monkeypatch.setattr(TimeBudget, "seconds_per_tomogram", seconds_per_tomogram)
    return broken


@pytest.mark.parametrize(
    "failure, runs_written, message",
    [
        ("device", [], "injected failure: device"),
        ("checkpoint", [], "injected failure: checkpoint"),
        ("list_runs", [], "injected failure: list_runs"),
        ("run TS_1", ["TS_2"], "injected failure: run TS_1"),
        ("nan TS_1", ["TS_1", "TS_2"], "TS_1: 1 pick(s) dropped (non-finite coordinates"),
        ("projection", ["TS_1", "TS_2"], "time guard off (RuntimeError: injected failure: projection)"),
    ],
)
def test_each_failure_still_writes_the_csv(fake, tmp_path, failure, runs_written, message):
    fake.add(failure)
    report = runtime.predict_submission(
        ["a.pt"], tmp_path, tmp_path / "out" / "submission.csv", report_json=tmp_path / "r.json"
    )
    submission = read_submission(tmp_path / "out" / "submission.csv")
    assert list(submission.columns) == list(SUBMISSION_COLUMNS)
    assert sorted(set(submission["experiment"])) == runs_written
    text = json.dumps(json.loads((tmp_path / "r.json").read_text()))
    assert message in report.summary() and message.split(" (")[0] in text
    if failure == "nan TS_1":
        assert len(submission) == 3 and np.isfinite(submission[["x", "y", "z"]].to_numpy()).all()


def test_an_unwritable_report_still_leaves_the_csv(fake, tmp_path):
    (tmp_path / "r.json").mkdir()  # a folder where the report should go
    report = runtime.predict_submission(
        ["a.pt"], tmp_path, tmp_path / "submission.csv", report_json=tmp_path / "r.json"
    )
    assert len(read_submission(tmp_path / "submission.csv")) == 4
    assert any("report" in error and "not written" in error for error in report.errors)


def test_unwritable_picks_fall_back_to_an_empty_csv(fake, tmp_path, monkeypatch):
    def broken_rows(picks, report):
        raise RuntimeError("injected failure: rows")

    monkeypatch.setattr(runtime, "_valid_rows", broken_rows)
    report = runtime.predict_submission(["a.pt"], tmp_path, tmp_path / "submission.csv")
    assert (tmp_path / "submission.csv").read_text().splitlines() == [",".join(SUBMISSION_COLUMNS)]
    assert "empty CSV written" in report.summary()
