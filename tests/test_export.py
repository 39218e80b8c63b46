"""Inference-only checkpoints: weights (EMA when present), configuration and thresholds, loadable with
``torch.load(weights_only=True)``; optionally fp16 or int8; ``cryokit export`` and ``kaggle bundle`` write them."""

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
from cryokit.training.checkpoint import export_inference_checkpoint, load_model, save_checkpoint, stored_weights

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
    half = export_inference_checkpoint(source, tmp_path / "fp16.pt", "float16")
    assert half["dtype"] == "float16" and half["bytes"] < full["bytes"]
    weights = torch.load(tmp_path / "fp16.pt", weights_only=True)["model"]
    reference = torch.load(tmp_path / "fp32.pt", weights_only=True)["model"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    assert sum(t.nbytes for t in weights.values()) < 0.55 * sum(t.nbytes for t in reference.values())
    probe = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        outputs = [load_model(tmp_path / name).model(probe) for name in ("fp32.pt", "fp16.pt")]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0.05, atol=0.05)


def test_int8_export_stores_kernels_in_int8_with_per_channel_scales_and_predicts_closely(tmp_path):
    source = training_checkpoint(tmp_path / "best.pt")
    full = export_inference_checkpoint(source, tmp_path / "fp32.pt")
    int8 = export_inference_checkpoint(source, tmp_path / "int8.pt", "int8")
    assert int8["dtype"] == "int8" and int8["bytes"] < full["bytes"]
    state = torch.load(tmp_path / "int8.pt", weights_only=True)
    reference = torch.load(tmp_path / "fp32.pt", weights_only=True)["model"]
    quantised = {name for name, tensor in state["model"].items() if tensor.dtype == torch.int8}
    assert quantised == set(state["int8_scales"])
    # Every kernel of 256+ values is int8; what stays floating is small and fp16.
    assert quantised == {n for n, t in reference.items() if t.is_floating_point() and t.ndim >= 2 and t.numel() >= 256}
    assert {t.dtype for n, t in state["model"].items() if n not in quantised and t.is_floating_point()} == {
        torch.float16
    }
    assert sum(t.nbytes for t in state["model"].values()) < 0.3 * sum(t.nbytes for t in reference.values())
    restored = stored_weights(state, "int8.pt")
    for name in quantised:  # rounding to the nearest of 255 levels per output channel: half a step at most
        step = state["int8_scales"][name].reshape(-1, *([1] * (reference[name].ndim - 1)))
        assert ((restored[name] - reference[name]).abs() <= step / 2 + 1e-7).all(), name
        assert (state["model"][name].flatten(1).abs().amax(1) == 127).all()  # each channel uses the full range
    probe = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        outputs = [load_model(tmp_path / name).model(probe) for name in ("fp32.pt", "int8.pt")]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0.05, atol=0.05)
    assert not torch.equal(outputs[1], outputs[0])  # the weights really went through int8


def test_int8_weight_without_its_scale_is_an_error_naming_it(tmp_path):
    source = training_checkpoint(tmp_path / "best.pt")
    export_inference_checkpoint(source, tmp_path / "int8.pt", "int8")
    state = torch.load(tmp_path / "int8.pt", weights_only=True)
    name = sorted(state["int8_scales"])[0]
    del state["int8_scales"][name]
    save_checkpoint(tmp_path / "broken.pt", state)
    with pytest.raises(ValueError, match=rf"broken.pt: int8 weight '{name}'.*found none"):
        load_model(tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="dtype must be one of"):
        export_inference_checkpoint(source, tmp_path / "x.pt", "int4")


def test_cli_export_prints_the_sizes(tmp_path, capsys):
    source = training_checkpoint(tmp_path / "best.pt")
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "x.pt"), "--half"]) == 0
    printed = capsys.readouterr().out
    assert "MB" in printed and "float16" in printed and "ema weights" in printed
    assert torch.load(tmp_path / "x.pt", weights_only=True)["inference_only"] is True
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "y.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(source), "--out", str(tmp_path / "q.pt"), "--weights", "int8"]) == 0
    assert "int8" in capsys.readouterr().out and torch.load(tmp_path / "q.pt", weights_only=True)["int8_scales"]


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_bundle_ships_inference_checkpoints(tmp_path, dtype):
    from cryokit.kaggle.bundle import bundle
    from cryokit.thresholds import save_thresholds

    source = training_checkpoint(tmp_path / "best.pt")
    thresholds = save_thresholds(tmp_path / "thresholds.json", THRESHOLDS)
    staged = bundle(
        [source], thresholds, tmp_path / "out", "tester/cryokit-models", wheel_source="installed", dtype=dtype
    )
    shipped = staged.dataset / "best.pt"
    state = torch.load(shipped, weights_only=True)
    assert state["inference_only"] and "optimizer" not in state
    assert staged.checkpoints[0]["bytes"] == shipped.stat().st_size < source.stat().st_size
    manifest = json.loads((staged.dataset / "cryokit_bundle.json").read_text())
    assert manifest["checkpoints"][0]["bytes"] == shipped.stat().st_size
    assert manifest["checkpoints"][0]["dtype"] == dtype and bool(state.get("int8_scales")) == (dtype == "int8")
    assert load_model(shipped).thresholds == THRESHOLDS


def test_auto_weights_are_int8_for_large_networks_and_float16_for_small_ones(tmp_path, monkeypatch):
    import cryokit.training.checkpoint as checkpoint_module

    source = training_checkpoint(tmp_path / "best.pt")
    parameters = sum(t.numel() for t in stored_weights(torch.load(source, weights_only=True), source).values())
    monkeypatch.setattr(checkpoint_module, "AUTO_INT8_MIN_PARAMETERS", parameters + 1)
    small = export_inference_checkpoint(source, tmp_path / "small.pt", "auto")
    monkeypatch.setattr(checkpoint_module, "AUTO_INT8_MIN_PARAMETERS", parameters)
    large = export_inference_checkpoint(source, tmp_path / "large.pt", "auto")
    assert small["dtype"] == "float16" and large["dtype"] == "int8" and large["bytes"] < small["bytes"]
    assert torch.load(tmp_path / "small.pt", weights_only=True)["weights_dtype"] == "float16"
    assert torch.load(tmp_path / "large.pt", weights_only=True)["int8_scales"]
    # the default U-Net and the default (half-width) detector ship in float16, a detector on MedicalNet's
    # full-width backbone in int8
    from cryokit.config import MODEL_PRESETS, apply_overrides

    counts = {}
    for name, overrides in (
        ("unet", MODEL_PRESETS["unet"]),
        ("yolo3d", MODEL_PRESETS["yolo3d"]),
        ("yolo3d_full_width", {**MODEL_PRESETS["yolo3d"], "model.backbone_width": 64}),
    ):
        model, _ = build_model_and_task(apply_overrides(RunConfig(), overrides), REAL_SPACING_ZYX)
        counts[name] = sum(p.numel() for p in model.parameters())
    monkeypatch.undo()
    assert max(counts["unet"], counts["yolo3d"]) < checkpoint_module.AUTO_INT8_MIN_PARAMETERS
    assert checkpoint_module.AUTO_INT8_MIN_PARAMETERS <= counts["yolo3d_full_width"]


def test_kaggle_bundle_stores_weights_by_auto_unless_told(tmp_path):
    from cryokit.cli import build_parser

    base = ["kaggle", "bundle", "--checkpoints", "a.pt", "--thresholds", "t.json", "--out", "o"]
    assert build_parser().parse_args(base).weights_dtype == "auto"
    assert build_parser().parse_args([*base, "--weights", "int8"]).weights_dtype == "int8"
    assert build_parser().parse_args(["export", "--checkpoint", "a.pt", "--out", "b.pt"]).weights_dtype == "float32"


def test_a_detector_checkpoint_keeps_the_offset_bound_it_was_trained_with(tmp_path):
    """The bound is not a weight: it comes back from the stored configuration, and a checkpoint of before
    centre sampling (no ``positive_radius_cells`` in it) loads with the bound it was trained with."""
    from cryokit.config import MODEL_PRESETS, apply_overrides

    preset = apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"])
    model, _ = build_model_and_task(preset, REAL_SPACING_ZYX)
    config, before = to_dict(preset), to_dict(preset)
    del before["target"]["positive_radius_cells"]
    bounds = {}
    for name, stored in (("centre_sampled", config), ("before", before)):
        state = {"model": model.state_dict(), "config": stored, "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX)}
        bounds[name] = load_model(save_checkpoint(tmp_path / f"{name}.pt", state)).model.offset_bound
    assert bounds == {"centre_sampled": 1.5, "before": 1.0}


def test_a_one_anchor_detector_checkpoint_loads_with_one_anchor(tmp_path):
    """``target.anchors`` is part of the stored configuration: a detector trained with one anchor comes back
    with one anchor's channels and radius; a checkpoint of before the option loads with the three size groups."""
    from cryokit.config import MODEL_PRESETS, apply_overrides

    preset = apply_overrides(RunConfig(), {**MODEL_PRESETS["yolo3d"], "target.anchors": "one"})
    model, task = build_model_and_task(preset, REAL_SPACING_ZYX)
    assert model.n_anchors == 1 and task.layout.n_channels == 11
    state = {
        "model": model.state_dict(),
        "config": to_dict(preset),
        "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX),
    }
    loaded = load_model(save_checkpoint(tmp_path / "one.pt", state))
    assert loaded.model.n_anchors == 1 and loaded.task.layout.n_anchors == 1
    before = to_dict(apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"]))
    del before["target"]["anchors"]
    three, _ = build_model_and_task(apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"]), REAL_SPACING_ZYX)
    state = {"model": three.state_dict(), "config": before, "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX)}
    assert load_model(save_checkpoint(tmp_path / "before.pt", state)).model.n_anchors == 3


def test_a_half_width_detector_checkpoint_loads_at_its_width(tmp_path):
    """``model.backbone_width`` is stored with the checkpoint: a detector on a half-width ResNet-18 comes back
    at that width with its weights; one saved before the option loads at MedicalNet's 64."""
    from cryokit.config import MODEL_PRESETS, apply_overrides

    preset = apply_overrides(RunConfig(), {**MODEL_PRESETS["yolo3d"], "model.backbone_width": 32})
    model, _ = build_model_and_task(preset, REAL_SPACING_ZYX)
    state = {
        "model": model.state_dict(),
        "config": to_dict(preset),
        "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX),
    }
    loaded = load_model(save_checkpoint(tmp_path / "narrow.pt", state)).model
    assert loaded.backbone.feature_channels["layer4"] == 256
    assert torch.equal(loaded.backbone.layer4[1].conv2.weight, model.backbone.layer4[1].conv2.weight)
    full_width = apply_overrides(RunConfig(), {**MODEL_PRESETS["yolo3d"], "model.backbone_width": 64})
    before = to_dict(full_width)
    del before["model"]["backbone_width"]
    full, _ = build_model_and_task(full_width, REAL_SPACING_ZYX)
    state = {"model": full.state_dict(), "config": before, "voxel_spacing_angstrom_zyx": list(REAL_SPACING_ZYX)}
    assert load_model(save_checkpoint(tmp_path / "before.pt", state)).model.backbone.width == 64
