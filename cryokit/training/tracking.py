"""A thin MLflow wrapper: one object per run, a no-op when tracking is off.

The default store is a SQLite file in the run folder (``sqlite:///<out_dir>/mlflow.db``, the backend
MLflow 3 recommends over plain files), with artifacts beside it; any tracking URI (an MLflow server)
works too. Runs can nest (Optuna trials under their study) through ``parent_run_id``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Tracker", "NullTracker", "open_tracker", "flatten"]

log = logging.getLogger(__name__)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class NullTracker:
    """Tracking switched off: every call does nothing."""

    run_id: str | None = None
    tracking_uri: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | Path, artifact_dir: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close("FAILED" if exc_type else "FINISHED")


class Tracker(NullTracker):
    """One MLflow run, created on construction.

    Args:
        tracking_uri: an MLflow URI; empty means a SQLite store in ``out_dir``.
        experiment: experiment name (created with its artifacts under ``out_dir`` if new and local).
        out_dir: the run folder.
        run_name: MLflow run name.
        parent_run_id: makes this run a child (nested) run.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        out_dir: str | Path,
        run_name: str = "",
        parent_run_id: str | None = None,
    ):
        from mlflow.tracking import MlflowClient

        out_dir = Path(out_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri or f"sqlite:///{out_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            artifacts = (out_dir / "mlartifacts").as_uri() if not tracking_uri else None
            experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            experiment_id = found.experiment_id
        tags = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name or None, tags=tags).info.run_id
        log.info("MLflow run %s in %s", self.run_id, self.tracking_uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, artifact_dir: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def close(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)


def open_tracker(
    enabled: bool,
    tracking_uri: str,
    experiment: str,
    out_dir: str | Path,
    run_name: str = "",
    parent_run_id: str | None = None,
) -> NullTracker:
    """A ``Tracker`` when ``enabled``, else a ``NullTracker``."""
    if not enabled:
        return NullTracker()
    return Tracker(tracking_uri, experiment, out_dir, run_name, parent_run_id)
