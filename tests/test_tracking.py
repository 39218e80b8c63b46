"""MLflow tracking: a local SQLite store by default, params, curves, artifacts, nested runs."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from cryokit.config import RunConfig, to_dict
from cryokit.training.tracking import NullTracker, flatten, open_tracker


def test_flatten_nested_config():
    flat = flatten(to_dict(RunConfig()))
    assert flat["train.lr"] == RunConfig().train.lr
    assert flat["patch.size_zyx"] == [64, 128, 128]


def test_local_store_params_metrics_artifacts_and_nesting(tmp_path):
    with open_tracker(True, "", "exp", tmp_path / "run", run_name="parent") as parent:
        parent.log_params({"train": {"lr": 0.01}, "model": {"channels": [8, 16]}})
        for epoch, value in enumerate([0.1, 0.3, 0.2], start=1):
            parent.log_metrics({"val_score": value, "val_f4/ribosome": value / 2}, step=epoch)
        (tmp_path / "thresholds.json").write_text('{"ribosome": 0.3}')
        parent.log_artifact(tmp_path / "thresholds.json")
        child = open_tracker(True, parent.tracking_uri, "exp", tmp_path / "run", "trial-0", parent.run_id)
        child.close()
    assert parent.tracking_uri == f"sqlite:///{(tmp_path / 'run' / 'mlflow.db').resolve()}"
    client = MlflowClient(parent.tracking_uri)
    run = client.get_run(parent.run_id)
    assert run.data.params["train.lr"] == "0.01" and run.data.params["model.channels"] == "[8, 16]"
    history = client.get_metric_history(parent.run_id, "val_score")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.3), (3, 0.2)]
    assert [a.path for a in client.list_artifacts(parent.run_id)] == ["thresholds.json"]
    assert run.info.status == "FINISHED"
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id
    assert (tmp_path / "run" / "mlartifacts").is_dir()


def test_disabled_tracking_writes_nothing(tmp_path):
    tracker = open_tracker(False, "", "exp", tmp_path / "run")
    assert isinstance(tracker, NullTracker)
    tracker.log_params({"a": 1})
    tracker.log_metrics({"b": 2.0}, step=1)
    assert not (tmp_path / "run").exists()


def test_fit_logs_config_curves_and_artifacts(tmp_path):
    from conftest import blob_config, make_blob_layout

    from cryokit.config import TrackingConfig, replace
    from cryokit.training.loop import fit

    make_blob_layout(tmp_path / "data", runs=("TS_a", "TS_b", "TS_c"))
    config = replace(blob_config(tmp_path / "data", tmp_path / "run", epochs=2), tracking=TrackingConfig())
    tracker = open_tracker(True, "", "exp", tmp_path / "run")
    with tracker:
        fit(config, tracker=tracker, progress=False)
    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(tracker.run_id)
    assert run.data.params["train.epochs"] == "2" and run.data.params["data.val_runs"] == "['TS_c']"
    assert [m.step for m in client.get_metric_history(tracker.run_id, "val_score")] == [1, 2]
    assert len(client.get_metric_history(tracker.run_id, "val_f4/ribosome")) == 2
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"curves.png", "best.pt", "thresholds.json", "val_table.csv", "history.json"} <= artifacts
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000
