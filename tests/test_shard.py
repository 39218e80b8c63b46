"""Runs shared out over devices: two CPU workers (and two torchrun ranks) write the CSV one worker writes;
the Kaggle time guard counts the devices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REAL_SPACING_ZYX, make_kaggle_layout

from cryokit.cli import main
from cryokit.config import DataConfig, ModelConfig, PatchConfig, RunConfig, TrackingConfig, to_dict
from cryokit.inference.predict import RunResults
from cryokit.inference.shard import inference_devices, merge_run_results, shard_runs
from cryokit.kaggle.budget import InferencePlan, TimeBudget
from cryokit.kaggle.runtime import predict_submission
from cryokit.models.build import build_model_and_task
from cryokit.particles import PARTICLE_NAMES
from cryokit.postprocess import scored_picks
from cryokit.training.checkpoint import save_checkpoint

RUNS = ("TS_s1", "TS_s2", "TS_s3", "TS_s4", "TS_s5")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A tiny untrained U-Net checkpoint (its near-uniform maps give many candidates) and a 5-run test split."""
    base = tmp_path_factory.mktemp("shard")
    root = base / "data"
    make_kaggle_layout(root, runs=RUNS, split="test", tomo_types=("denoised",), shape_zyx=(16, 32, 36))
    config = RunConfig(
        data=DataConfig(root=str(root)),
        patch=PatchConfig(size_zyx=(16, 32, 32), batch_size=2, inference_batch_size=4),
        model=ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0),
        tracking=TrackingConfig(enabled=False),
    )
    torch.manual_seed(0)
    model, _ = build_model_and_task(config, REAL_SPACING_ZYX)
    state = {
        "model": model.state_dict(),
        "ema": None,
        "config": to_dict(config),
        "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX),
        "thresholds": {},
    }
    return {"root": root, "checkpoint": save_checkpoint(base / "model.pt", state)}


def predict_csv(untrained, out: Path, *extra: str) -> str:
    argv = ["predict", "--checkpoint", str(untrained["checkpoint"]), "--data", str(untrained["root"])]
    assert main([*argv, "--device", "cpu", "--keep-scores", "--out", str(out), *extra]) == 0
    return out.read_text()


def test_shares_take_every_nth_run_and_merge_back_in_run_order():
    assert shard_runs(RUNS, 0, 2) == ["TS_s1", "TS_s3", "TS_s5"] and shard_runs(RUNS, 1, 2) == ["TS_s2", "TS_s4"]
    assert sorted(sum((shard_runs(RUNS, r, 3) for r in range(3)), [])) == sorted(RUNS)
    with pytest.raises(ValueError, match="rank"):
        shard_runs(RUNS, 2, 2)
    assert inference_devices("cpu", workers=2) == [torch.device("cpu")] * 2
    with pytest.raises(ValueError, match="workers"):
        inference_devices("cpu", workers=0)
    parts = [
        RunResults(
            pd.concat([scored_picks(run, "ribosome", [[i, 0, 0]], [0.5]) for i, run in enumerate(share)]),
            seconds={run: 1.0 for run in share},
        )
        for share in (shard_runs(RUNS, 1, 2), shard_runs(RUNS, 0, 2))  # the second worker's first
    ]
    merged = merge_run_results(parts, RUNS)
    assert list(merged.picks["experiment"]) == list(RUNS) and list(merged.seconds) == list(RUNS)


def test_two_cpu_workers_write_the_csv_of_one(untrained, tmp_path):
    one = predict_csv(untrained, tmp_path / "one.csv")
    two = predict_csv(untrained, tmp_path / "two.csv", "--workers", "2")
    frame = pd.read_csv(tmp_path / "one.csv")
    assert list(dict.fromkeys(frame["experiment"])) == list(RUNS) and len(frame) > 20
    assert two == one


def test_one_device_reads_each_checkpoint_once(untrained, tmp_path, monkeypatch):
    import cryokit.training.checkpoint as checkpoint_module

    reads = []
    real = checkpoint_module.load_checkpoint
    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda path, *a, **k: reads.append(path) or real(path))
    predict_csv(untrained, tmp_path / "one.csv")
    assert list(map(str, reads)) == [str(untrained["checkpoint"])]  # read for the checks, and predicted with


def test_two_torchrun_ranks_write_the_csv_of_one(untrained, tmp_path):
    one = predict_csv(untrained, tmp_path / "one.csv")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    argv = ["predict", "--checkpoint", str(untrained["checkpoint"]), "--data", str(untrained["root"])]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533"]
        + ["-m", "cryokit", *argv, "--device", "cpu", "--keep-scores", "--out", str(tmp_path / "ranks.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ranks.csv").read_text() == one


def test_kaggle_runtime_shards_over_two_workers_into_one_csv(untrained, tmp_path):
    reports = {}
    for workers in (1, 2):
        reports[workers] = predict_submission(
            [untrained["checkpoint"]],
            untrained["root"],
            tmp_path / f"sub{workers}.csv",
            thresholds={name: 0.06 for name in PARTICLE_NAMES},
            device="cpu",
            workers=workers,
            on_error="raise",
        )
    assert (tmp_path / "sub2.csv").read_text() == (tmp_path / "sub1.csv").read_text()
    two = reports[2]
    assert two.device == "cpu, cpu" and list(two.seconds) == list(RUNS) and two.n_picks == reports[1].n_picks > 0
    assert two.final_plan["tta"] == "none" and two.seconds_per_tomogram > 0 and not two.errors


def test_time_guard_counts_devices():
    plan = InferencePlan("none", (0,))
    now = [0.0]
    one, two = (TimeBudget(1000.0, 10, 0.0, lambda: now[0], devices=n) for n in (1, 2))
    for budget in (one, two):
        budget.record(plan, 100.0)
    now[0] = 100.0
    # One tomogram done on each: one device has 9 left (100 + 900 s), each of two has 4 of its 5 (100 + 400 s).
    assert one.projected_total(plan, 1) == pytest.approx(1000.0)
    assert two.tomograms_per_device == 5 and two.projected_total(plan, 1) == pytest.approx(500.0)
    with pytest.raises(ValueError, match="devices"):
        TimeBudget(1000.0, 10, devices=0)


def test_predict_run_decodes_only_what_passes_the_thresholds_and_gets_the_same_picks(untrained):
    """With known thresholds (one model, no ensemble) the decoder's floors are the thresholds: same picks."""
    from cryokit.inference.predict import ensemble_groups, predict_run
    from cryokit.postprocess import apply_thresholds
    from cryokit.training.checkpoint import load_model

    groups = ensemble_groups([load_model(untrained["checkpoint"], torch.device("cpu"))])
    every = predict_run(groups, str(untrained["root"]), "test", RUNS[0], keep_scores=True)
    # a threshold per class at the median of its candidates: half of them pass
    thresholds = every.groupby("particle_type")["score"].median().to_dict()
    picks = predict_run(groups, str(untrained["root"]), "test", RUNS[0], thresholds=thresholds)
    wanted = apply_thresholds(every, thresholds, 1.0)
    assert 0 < len(picks) < len(every)
    pd.testing.assert_frame_equal(picks.reset_index(drop=True), wanted.reset_index(drop=True))
