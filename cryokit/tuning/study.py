"""Optuna studies that maximise the validation F4 of ``cryokit.training.fit``.

A trial is the base config plus overrides sampled from ``cryokit.tuning.space`` (``apply_overrides``).
Each trial reports its validation F4 after every validated epoch, so a median or Hyperband pruner stops
bad trials early (state PRUNED); a trial that raises (non-finite loss, out of memory, a config that does
not build) is recorded as FAIL with its error in the user attribute ``error``, and the study goes on.

Storage (``open_storage``): a SQLite file ``OUT/optuna.db`` by default, any SQLAlchemy URL
(``postgresql://user:pw@host/db``) or a journal file (``journal:PATH`` or a path ending in ``.log``).
With an RDB or a journal file, several workers on one or several machines share one study: start
``cryokit tune`` with the same ``--study`` and ``--storage`` as often as you like. ``n_trials`` counts
per worker (each worker runs exactly that many trials); ``max_trials`` additionally stops every worker
once the study holds that many finished trials (``optuna.study.MaxTrialsCallback``; concurrent workers
may overshoot it by at most one trial each). Runs are resumable: the study is loaded if it exists.

With tracking on, the study has one MLflow run and every trial is a run nested under it
(``parent_run_id``) with its config as params and its per-epoch curves as metrics. The best trial's
config is written to ``OUT/best_config.yaml``, ready for ``cryokit train --config``.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import optuna
import yaml

from cryokit.config import RunConfig, apply_overrides, from_dict, to_dict
from cryokit.io.atomic import atomic_write_text
from cryokit.training.tracking import NullTracker, open_tracker
from cryokit.tuning.space import SearchSpace, default_space

__all__ = [
    "OBJECTIVES",
    "PRUNERS",
    "open_storage",
    "make_pruner",
    "fit_objective",
    "quadratic_objective",
    "run_study",
    "best_config",
    "write_best_config",
]

log = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")
# Errors that fail one trial and let the study go on (torch's out-of-memory error is a RuntimeError).
TRIAL_ERRORS = (FloatingPointError, RuntimeError, MemoryError, ValueError)
_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def _rdb_storage(url: str, heartbeat: bool) -> optuna.storages.RDBStorage:
    """An RDB storage; retried because workers starting together race to create the tables."""
    kwargs = {"heartbeat_interval": 60, "grace_period": 180} if heartbeat else {}
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as error:  # sqlalchemy's errors, raised while another worker creates the schema
            if attempt == 5:
                raise
            log.info("storage %s not ready (%s); retrying", url.split("@")[-1], type(error).__name__)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 defaults to psycopg 3, the
    test extra installs psycopg2."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def open_storage(url: str | None, out_dir: str | Path) -> optuna.storages.BaseStorage:
    """The study storage for a URL (see the module docstring); None or "" gives ``OUT/optuna.db``."""
    if not url:
        path = Path(out_dir).resolve() / "optuna.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return _rdb_storage(f"sqlite:///{path}", heartbeat=False)
    if url.startswith("journal:") or ("://" not in url and url.endswith(".log")):
        path = Path(url.removeprefix("journal:")).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ValueError(
            f"storage {url!r} is neither a database URL (sqlite:///..., postgresql://...) "
            "nor a journal file (journal:PATH or a path ending in .log)"
        )
    # A crashed worker's RUNNING trial is failed after a missed heartbeat (not for SQLite: one machine).
    return _rdb_storage(_with_driver(url), heartbeat=not url.startswith("sqlite"))


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """ "median" (after 2 trials and 1 epoch), "hyperband" (1 to ``max_epochs`` epochs) or "none"."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner must be one of {PRUNERS}, got {name!r}")


def _trial_config(trial: optuna.Trial, base: RunConfig, space: SearchSpace, out_dir: Path) -> RunConfig:
    """Base + sampled overrides, with the trial's own folder; stored on the trial as ``config``."""
    overrides = space.sample(trial, base)
    config = apply_overrides(base, {**overrides, "train.out_dir": str(out_dir / "trials" / f"{trial.number:04d}")})
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("config", to_dict(config))
    return config


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def fit_objective(
    base: RunConfig, space: SearchSpace, out_dir: str | Path, parent_run_id: str | None = None
) -> Callable[[optuna.Trial], float]:
    """The real objective: train the trial's config with ``fit`` and return its best validation F4."""
    from cryokit.training.loop import fit

    out_dir = Path(out_dir)

    def objective(trial: optuna.Trial) -> float:
        config = _trial_config(trial, base, space, out_dir)
        tracking = config.tracking
        tracker = open_tracker(
            tracking.enabled,
            tracking.tracking_uri,
            tracking.experiment,
            out_dir,
            f"trial-{trial.number}",
            parent_run_id,
        )
        status = "FAILED"
        try:
            tracker.set_tags({"optuna.study": trial.study.study_name, "optuna.trial": trial.number})

            def report(epoch: int, metrics: dict) -> None:
                if "val_score" in metrics:
                    trial.report(float(metrics["val_score"]), epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {epoch} (val_score {metrics['val_score']:.4f})")

            result = fit(config, tracker=tracker, on_epoch_end=report, progress=False)
            if not math.isfinite(result.best_score) or result.best_epoch < 0:
                raise ValueError(f"trial {trial.number} produced no validation score (is data.val_runs set?)")
            status = "FINISHED"
            return result.best_score
        except optuna.TrialPruned:
            status = "KILLED"
            raise
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        finally:
            tracker.close(status)
            _free_memory()

    return objective


def quadratic_objective(
    base: RunConfig, space: SearchSpace, out_dir: str | Path, parent_run_id: str | None = None, epochs: int = 3
) -> Callable[[optuna.Trial], float]:
    """A cheap stand-in for tests and demos: the same sampling and configs, a smooth score instead of ``fit``.

    The score is 1 minus the mean squared distance of the numeric ranges' normalised values from 0.3,
    reported ``epochs`` times (rising to it) so pruners see learning curves.
    """
    out_dir = Path(out_dir)

    def objective(trial: optuna.Trial) -> float:
        _trial_config(trial, base, space, out_dir)
        distances = [0.0]
        for spec in space.specs:
            if spec.choices is None and spec.key in trial.params and spec.high > spec.low:
                x, low, high = (math.log(v) if spec.log else v for v in (trial.params[spec.key], spec.low, spec.high))
                distances.append(((x - low) / (high - low) - 0.3) ** 2)
        value = 1.0 - sum(distances) / max(1, len(distances) - 1)
        for epoch in range(1, epochs + 1):
            trial.report(value * epoch / epochs, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    return objective


OBJECTIVES: dict[str, Callable[..., Callable[[optuna.Trial], float]]] = {
    "fit": fit_objective,
    "quadratic": quadratic_objective,
}


def _study_tracker(study: optuna.Study, base: RunConfig, space: SearchSpace, out_dir: Path) -> NullTracker:
    """The study's MLflow run, created once and its id kept in the study. Later workers and resumed runs
    adopt it when it is in their MLflow store (a worker that loses the race to create it adopts the
    winner's); a worker with another store (another machine's local file) keeps its own."""
    tracking = base.tracking
    tracker = open_tracker(
        tracking.enabled,
        tracking.tracking_uri,
        tracking.experiment,
        out_dir,
        tracking.run_name or f"study-{study.study_name}",
    )
    if tracker.run_id is None:
        return tracker
    mine = tracker.run_id
    if not study.user_attrs.get("mlflow_run_id"):
        tracker.log_params({"study": study.study_name, "space": json.dumps(space.describe()), "base": to_dict(base)})
        study.set_user_attr("mlflow_run_id", mine)
    chosen = study.user_attrs["mlflow_run_id"]
    if chosen != mine:
        try:
            tracker.client.get_run(chosen)
        except Exception:  # not in this store: keep this worker's own study run
            return tracker
        tracker.client.delete_run(mine)
        tracker.run_id = chosen
    return tracker


def run_study(
    study_name: str,
    base: RunConfig,
    n_trials: int,
    space: SearchSpace | None = None,
    storage: str | None = None,
    out_dir: str | Path = "runs/tune",
    objective: str = "fit",
    timeout: float | None = None,
    max_trials: int | None = None,
    pruner: str = "median",
    seed: int | None = None,
) -> optuna.Study:
    """Create or load ``study_name`` and run ``n_trials`` trials in this process.

    Args:
        study_name: the study (shared by every worker that names it with the same storage).
        base: the base config (``data.val_runs`` must name validation runs for the ``fit`` objective).
        n_trials: trials this worker runs.
        space: the search space (``default_space()`` if None).
        storage: see ``open_storage``; None: ``out_dir/optuna.db``.
        out_dir: trial folders, ``best_config.yaml``, ``trials.csv`` and the default stores go here.
        objective: a name in ``OBJECTIVES`` ("fit", or "quadratic" for tests).
        timeout: stop starting trials after this many seconds.
        max_trials: stop once the study holds this many finished trials (all workers together).
        pruner: one of ``PRUNERS``.
        seed: TPE sampler seed (give each worker its own, or None).

    Returns:
        The study, reloaded after this worker's trials.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    if objective == "fit" and not base.data.val_runs:
        raise ValueError("tuning maximises the validation F4: set data.val_runs (e.g. --set data.val_runs=[TS_5_4])")
    out_dir, space = Path(out_dir), space or default_space()
    out_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=open_storage(storage, out_dir),
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=make_pruner(pruner, base.train.epochs),
    )
    tracker = _study_tracker(study, base, space, out_dir)
    callbacks = [optuna.study.MaxTrialsCallback(max_trials, states=_FINISHED)] if max_trials else []
    if max_trials and len(study.get_trials(deepcopy=False, states=_FINISHED)) >= max_trials:
        log.info("study %s already holds %d finished trials", study_name, max_trials)
    else:
        study.optimize(
            OBJECTIVES[objective](base, space, out_dir, tracker.run_id),
            n_trials=n_trials,
            timeout=timeout,
            catch=TRIAL_ERRORS,
            callbacks=callbacks,
        )
    _write_summary(study, out_dir, tracker)
    tracker.close("FINISHED")
    return study


def _write_summary(study: optuna.Study, out_dir: Path, tracker: NullTracker) -> None:
    """``trials.csv``, and for the best trial ``best_config.yaml`` and ``best_trial.json``; logged to MLflow."""
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    atomic_write_text(out_dir / "trials.csv", frame.to_csv(index=False))
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in _FINISHED}
    log.info("study %s: %s", study.study_name, ", ".join(f"{n} {k}" for k, n in counts.items()))
    if not complete:
        return
    best = study.best_trial
    path = write_best_config(study, out_dir / "best_config.yaml")
    summary = {
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "trial_dir": best.user_attrs.get("config", {}).get("train", {}).get("out_dir"),
        **counts,
    }
    atomic_write_text(out_dir / "best_trial.json", json.dumps(summary, indent=2, default=str))
    tracker.log_metrics({"best_value": best.value, **{f"n_{k}": v for k, v in counts.items()}})
    tracker.log_artifact(path)


def best_config(study: optuna.Study, out_dir: str | Path | None = None) -> RunConfig:
    """The best trial's config (``train.out_dir`` moved to ``out_dir`` when given, so that retraining
    does not overwrite the trial's folder)."""
    config = from_dict(RunConfig, study.best_trial.user_attrs["config"])
    return apply_overrides(config, {"train.out_dir": str(out_dir)}) if out_dir is not None else config


def write_best_config(study: optuna.Study, path: str | Path) -> Path:
    """Write the best trial's config as YAML for ``cryokit train --config`` (retraining into ``<path dir>/best``)."""
    path = Path(path)
    best = study.best_trial
    config = best_config(study, path.parent / "best")
    header = (
        f"# Best trial {best.number} of Optuna study {study.study_name!r}: validation F4 {best.value:.5f}.\n"
        f"# Retrain with: cryokit train --config {path.name}\n"
    )
    body = yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, header + body)
