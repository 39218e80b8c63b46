"""Optuna studies: storages, pruning, failed trials, and two workers sharing one study.

The worker tests run ``cryokit tune --objective quadratic`` (the real sampling, configs and storage,
a cheap score instead of training) in two processes at once, against a journal file and against a
PostgreSQL server (``scripts/ci_services.sh`` starts one; the test skips when none is reachable).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest

from cryokit.cli import main
from cryokit.config import RunConfig, apply_overrides
from cryokit.tuning.space import default_space
from cryokit.tuning.study import open_storage, run_study

POSTGRES_URL = (
    os.environ.get("CRYOKIT_TEST_POSTGRES_URL") or "postgresql://cryokit:cryokit@127.0.0.1:5432/cryokit_test"
)  # scripts/ci_services.sh
QUIET = apply_overrides(RunConfig(), {"tracking.enabled": False})
State = optuna.trial.TrialState


def test_storage_urls(tmp_path):
    assert isinstance(open_storage(None, tmp_path), optuna.storages.RDBStorage)
    assert (tmp_path / "optuna.db").is_file()
    assert isinstance(open_storage(f"journal:{tmp_path}/a/j.log", tmp_path), optuna.storages.JournalStorage)
    assert isinstance(open_storage(str(tmp_path / "b.log"), tmp_path), optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match="neither a database URL"):
        open_storage("somewhere/study.db", tmp_path)


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruned_trials_are_recorded_and_the_study_goes_on(tmp_path, pruner):
    study = run_study(
        "pruning",
        QUIET,
        n_trials=12,
        storage=f"journal:{tmp_path}/j.log",
        out_dir=tmp_path,
        objective="quadratic",
        pruner=pruner,
        seed=0,
    )
    states = [t.state for t in study.trials]
    assert len(states) == 12 and State.PRUNED in states and State.COMPLETE in states
    assert (tmp_path / "best_config.yaml").is_file() and (tmp_path / "trials.csv").is_file()


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    import cryokit.training.loop

    calls = []

    def flaky_fit(config, tracker=None, on_epoch_end=None, progress=True):
        calls.append(config.train.out_dir)
        if len(calls) % 2:
            raise FloatingPointError("non-finite training loss nan at epoch 1, step 2")
        on_epoch_end(1, {"val_score": 0.5})
        return type("R", (), {"best_score": 0.5 + len(calls) / 100, "best_epoch": 1})()

    monkeypatch.setattr(cryokit.training.loop, "fit", flaky_fit)
    base = apply_overrides(QUIET, {"data.val_runs": ["TS_x"]})
    study = run_study("failing", base, n_trials=4, out_dir=tmp_path, objective="fit", pruner="none", seed=0)
    assert [t.state for t in study.trials] == [State.FAIL, State.COMPLETE] * 2
    assert "FloatingPointError" in study.trials[0].user_attrs["error"]
    assert study.best_trial.number == 3 and calls[3].endswith("trials/0003")


def test_tuning_needs_validation_runs(tmp_path):
    with pytest.raises(ValueError, match="data.val_runs"):
        run_study("x", QUIET, n_trials=1, out_dir=tmp_path)


def test_cli_reports_a_bad_space_file(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("model.width: {low: 1, high: 2}\n")
    code = main(["tune", "--study", "s", "--trials", "1", "--space", str(space), "--out", str(tmp_path)])
    assert code == 2 and "unknown key(s) model.width" in capsys.readouterr().err


def _postgres_reachable() -> str | None:
    """None when a PostgreSQL server answers at POSTGRES_URL, else the reason to skip."""
    try:
        import sqlalchemy

        from cryokit.tuning.study import _with_driver

        engine = sqlalchemy.create_engine(_with_driver(POSTGRES_URL), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as error:  # driver missing, server down, wrong password
        return (
            f"no PostgreSQL server at {POSTGRES_URL.split('@')[-1]} ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:120]}); bash scripts/ci_services.sh starts one"
        )


def _two_workers(storage: str, tmp_path: Path, trials_each: int = 4) -> optuna.Study:
    study_name = f"workers-{uuid.uuid4().hex[:8]}"
    command = [
        sys.executable,
        "-m",
        "cryokit",
        "tune",
        "--study",
        study_name,
        "--storage",
        storage,
        "--trials",
        str(trials_each),
        "--objective",
        "quadratic",
        "--pruner",
        "none",
        "--set",
        "tracking.enabled=false",
    ]
    workers = [
        subprocess.Popen(
            command + ["--out", str(tmp_path / f"worker{i}"), "--seed", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        output = worker.communicate(timeout=120)[0]
        assert worker.returncode == 0, output
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, tmp_path))
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(2 * trials_each))  # every trial recorded once, numbers contiguous
    assert all(t.state == State.COMPLETE for t in study.trials)
    assert len({t.user_attrs["config"]["train"]["out_dir"] for t in study.trials}) == 2 * trials_each
    return study


def test_two_workers_share_a_journal_file(tmp_path):
    _two_workers(f"journal:{tmp_path / 'study.log'}", tmp_path)


def test_two_workers_share_a_postgres_database(tmp_path):
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    study = _two_workers(POSTGRES_URL, tmp_path)
    optuna.delete_study(study_name=study.study_name, storage=open_storage(POSTGRES_URL, tmp_path))


def test_max_trials_caps_the_study_across_runs(tmp_path):
    storage = f"journal:{tmp_path / 'j.log'}"
    run_study("capped", QUIET, n_trials=3, storage=storage, out_dir=tmp_path, objective="quadratic", seed=0)
    study = run_study(
        "capped", QUIET, n_trials=10, storage=storage, out_dir=tmp_path, objective="quadratic", max_trials=5, seed=1
    )  # resumed: finishes the study up to 5 trials
    assert len(study.trials) == 5
    assert (
        len(
            run_study(
                "capped", QUIET, n_trials=10, storage=storage, out_dir=tmp_path, objective="quadratic", max_trials=5
            ).trials
        )
        == 5
    )
    assert default_space().keys[0] in study.best_params
