"""Distributed data-parallel training: 2 CPU processes with Gloo under torchrun.

The replicas' weights stay identical, and the result matches a single-process run on the same global
batch (2 ranks x batch 1 against 1 process x batch 2) within float tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import blob_config, make_blob_layout

from cryokit.config import replace, to_dict
from cryokit.models.build import build_model_and_task
from cryokit.training.checkpoint import load_checkpoint
from cryokit.training.loop import fit

# Each rank trains, then saves its own replica's weights, so the test can compare them.
WORKER = """
import json, os, sys, torch
from cryokit.config import RunConfig, from_dict
from cryokit.training.loop import fit
import cryokit.training.loop as train

config = from_dict(RunConfig, json.loads(open(sys.argv[1]).read()))
captured = {}
original = train._setup
def keep(cfg):
    run = original(cfg)
    captured["run"] = run
    return run
train._setup = keep
fit(config, progress=False)
torch.save(captured["run"].model.state_dict(), os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
"""


@pytest.fixture(scope="module")
def blob_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    make_blob_layout(root, runs=("TS_a", "TS_b", "TS_c"))
    return root


def test_two_gloo_ranks_match_one_process_on_the_same_global_batch(blob_root, tmp_path):
    base = blob_config(blob_root, tmp_path / "ddp", epochs=2)
    # Equal class weights: a weighted cross-entropy is normalised by each batch's weight sum, so with
    # unequal weights two half-batches do not average to the whole batch (true of any data-parallel run).
    base = replace(
        base,
        patch=replace(base.patch, batch_size=1, patches_per_epoch=8),
        loss=replace(base.loss, particle_weight=1.0),
        train=replace(base.train, lr=0.003),
    )
    (tmp_path / "config.json").write_text(json.dumps(to_dict(base)))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29531",
            str(tmp_path / "worker.py"),
            str(tmp_path / "config.json"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name, tensor in rank0.items():
        torch.testing.assert_close(rank1[name], tensor, rtol=0, atol=0, msg=f"replicas differ at {name}")
    # Only rank 0 wrote checkpoints; they hold rank 0's weights and the validation history.
    saved = load_checkpoint(tmp_path / "ddp" / "last.pt")
    for name, tensor in rank0.items():
        torch.testing.assert_close(saved["model"][name], tensor, rtol=0, atol=0)
    assert saved["epoch"] == 2 and "val_score" in saved["history"][-1]

    single = replace(
        base, patch=replace(base.patch, batch_size=2), train=replace(base.train, out_dir=str(tmp_path / "single"))
    )
    fit(single, progress=False)
    reference = load_checkpoint(tmp_path / "single" / "last.pt")
    assert reference["step"] == saved["step"] == 8  # 8 patches, global batch 2, 2 epochs
    # A bias right before an instance norm has a gradient of zero up to rounding; Adam turns that
    # rounding noise into full-size steps, so those biases differ while the function does not.
    cancelled = {n for n in rank0 if n.endswith("conv.bias") and n.replace("conv.bias", "adn.A.weight") in rank0}
    for name, tensor in reference["model"].items():
        if name not in cancelled:
            torch.testing.assert_close(rank0[name], tensor, rtol=1e-4, atol=1e-6, msg=f"DDP differs at {name}")
    network, _ = build_model_and_task(base, (20.0, 20.0, 20.0))
    probe = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = []
    for weights in (rank0, reference["model"]):
        network.load_state_dict(weights)
        outputs.append(network.eval()(probe))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
    losses = [[h["train_loss"] for h in c["history"]] for c in (saved, reference)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_every_rank_stops_together_on_early_stopping(blob_root, tmp_path):
    # lr = 0: the first validation is never beaten, so rank 0 stops after 1 + patience epochs; a rank
    # that did not hear it would wait for the others' gradients forever (the timeout below).
    config = blob_config(blob_root, tmp_path / "ddp", epochs=6, early_stopping_patience=1)
    config = replace(
        config, patch=replace(config.patch, batch_size=1, patches_per_epoch=4), train=replace(config.train, lr=0.0)
    )
    (tmp_path / "config.json").write_text(json.dumps(to_dict(config)))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29532",
            str(tmp_path / "worker.py"),
            str(tmp_path / "config.json"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "rank0.pt").is_file() and (tmp_path / "rank1.pt").is_file()
    assert [h["epoch"] for h in load_checkpoint(tmp_path / "ddp" / "last.pt")["history"]] == [1, 2]
