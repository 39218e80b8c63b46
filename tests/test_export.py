"""Inference-only checkpoints: weights (EMA when present), configuration and thresholds, loadable with
``torch.load(weights_only=True)``; optionally fp16; ``cryokit export`` and ``kaggle bundle`` write them."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import REAL_SPACING_ZYX

from cryokit.cli import main
from cryokit.config import ModelConfig, RunConfig, TrainConfig, to_dict
from cryokit.models.build import build_model_and_task
from cryokit.training.checkpoint import export_inference_checkpoint, load_model, save_checkpoint

THRESHOLDS = {"apo-ferritin": 0.3, "ribosome": 0.25}
PLAIN = (dict, list, str, int, float, bool, type(None))


def training_checkpoint(path, ema: bool = True):
    """A checkpoint as ``fit`` writes it: model, EMA, optimiser (with its moments), RNG states, history."""
    config = RunConfig(model=ModelConfig(channels=(4, 8, 16), strides=(2, 2)), train=TrainConfig(ema_decay=0.9))
    torch.manual_seed(0)
    model, _ = build_model_and_task(config, REAL_SPACING_ZYX)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(1, 1, 16, 32, 32)).square().mean().backward()
    optimizer.step()
    averaged = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    state = {
        "model": model.state_dict(),
        "ema": averaged if ema else None,
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "history": [{"val_score": 0.5}],
        "thresholds": THRESHOLDS,
        "config": to_dict(config),
        "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX),
        "rng": {"python": random.getstate(), "numpy": np.random.get_state()},
    }
    return save_checkpoint(path, state)


def walk(value):
    """Every leaf of nested dicts and lists."""
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    else:
        yield value


@pytest.mark.parametrize("ema", [True, False])
def test_export_keeps_what_inference_needs_and_loads_with_weights_only(tmp_path, ema):
    source = training_checkpoint(tmp_path / "best.pt", ema)
    sizes = export_inference_checkpoint(source, tmp_path / "infer.pt")
    state = torch.load(tmp_path / "infer.pt", weights_only=True)
    assert sizes["weights"] == ("ema" if ema else "model") and sizes["bytes"] < sizes["source_bytes"]
    assert "optimizer" not in state and "rng" not in state and "history" not in state
    assert state["thresholds"] == THRESHOLDS
    for key, value in state.items():
        if key != "model":
            assert all(isinstance(leaf, PLAIN) for leaf in walk(value)), key
    original, exported = load_model(source), load_model(tmp_path / "infer.pt")
    assert exported.thresholds == THRESHOLDS and exported.config == original.config
    probe = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.model(probe), original.model(probe), rtol=0, atol=0)


def test_half_export_is_half_the_size_and_close(tmp_path):
    source = training_checkpoint(tmp_path / "best.pt")
    full = export_inference_checkpoint(source, tmp_path / "fp32.pt")
    half = export_inference_checkpoint(source, tmp_path / "fp16.pt", half=True)
    assert half["dtype"] == "float16" and half["bytes"] < full["bytes"]
    weights = torch.load(tmp_path / "fp16.pt", weights_only=True)["model"]
    reference = torch.load(tmp_path / "fp32.pt", weights_only=True)["model"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    assert sum(t.nbytes for t in weights.values()) < 0.55 * sum(t.nbytes for t in reference.values())
    probe = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        outputs = [load_model(tmp_path / name).model(probe) for name in ("fp32.pt", "fp16.pt")]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0.05, atol=0.05)


def test_cli_export_prints_the_sizes(tmp_path, capsys):
    source = training_checkpoint(tmp_path / "best.pt")
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "x.pt"), "--half"]) == 0
    printed = capsys.readouterr().out
    assert "MB" in printed and "float16" in printed and "ema weights" in printed
    assert torch.load(tmp_path / "x.pt", weights_only=True)["inference_only"] is True
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "y.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err


def test_bundle_ships_inference_checkpoints(tmp_path):
    from cryokit.kaggle.bundle import bundle
    from cryokit.thresholds import save_thresholds

    source = training_checkpoint(tmp_path / "best.pt")
    thresholds = save_thresholds(tmp_path / "thresholds.json", THRESHOLDS)
    staged = bundle([source], thresholds, tmp_path / "out", "tester/cryokit-models", wheel_source="installed")
    shipped = staged.dataset / "best.pt"
    state = torch.load(shipped, weights_only=True)
    assert state["inference_only"] and "optimizer" not in state
    assert staged.checkpoints[0]["bytes"] == shipped.stat().st_size < source.stat().st_size
    manifest = json.loads((staged.dataset / "cryokit_bundle.json").read_text())
    assert manifest["checkpoints"][0]["bytes"] == shipped.stat().st_size
