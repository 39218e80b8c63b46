"""--precision {fp32,bf16,fp16}: resolved once, applied to the network of predict, train validation and
the Kaggle notebook; "auto" on the CPU is bf16 for inference where the CPU has bf16 instructions, fp32
elsewhere and for training's validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryokit.cli import build_parser, main
from cryokit.inference import device as device_module
from cryokit.inference.device import autocast_precision, cpu_default_precision, resolve_precision
from cryokit.inference.predict import predict_maps
from cryokit.inference.sliding_window import SlidingWindow
from cryokit.models.unet import segmentation_unet

PATCH = SlidingWindow(size_zyx=(16, 32, 32), overlap=0.25, batch_size=2)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return segmentation_unet(channels=(4, 8, 16), strides=(2, 2)).eval()


def _softmax(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.float().softmax(dim=1)[:, 1:]


def test_auto_resolves_per_device_and_bad_names_raise(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_native_bf16", lambda: True)
    assert cpu_default_precision() == "bf16" and resolve_precision("auto", "cpu", cpu_bf16=True) == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"  # training and validation: fp32 on every CPU
    assert resolve_precision("auto", "cpu", amp=False, cpu_bf16=True) == "fp32"
    monkeypatch.setattr(device_module, "cpu_native_bf16", lambda: False)  # emulated bf16 is slower than fp32
    assert cpu_default_precision() == "fp32" and resolve_precision("auto", "cpu", cpu_bf16=True) == "fp32"
    assert resolve_precision("fp16", "cpu") == "fp16" and resolve_precision("auto", "cuda", amp=False) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")
    with autocast_precision("cpu", "bf16"):
        assert torch.matmul(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast_precision("cpu", "fp32"):
        assert torch.matmul(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precisions_run_the_network_in_half_and_stay_close_to_fp32(precision):
    volume = np.random.default_rng(0).normal(size=(20, 40, 44)).astype(np.float32)
    full = predict_maps(_net(), _softmax, volume, PATCH, precision="fp32")
    half = predict_maps(_net(), _softmax, volume, PATCH, precision=precision)
    assert half.dtype == torch.float32 and half.shape == full.shape
    difference = (half - full).abs().max().item()
    assert 0 < difference < 0.05  # really another precision, and close


def test_cli_takes_precision_for_predict_and_train_validation(monkeypatch, tmp_path):
    parser = build_parser()
    assert parser.parse_args(["predict", "--checkpoint", "a.pt", "--data", "d", "--out", "o.csv"]).precision == "auto"
    args = parser.parse_args(["predict", "--checkpoint", "a.pt", "--data", "d", "--out", "o", "--precision", "bf16"])
    assert args.precision == "bf16" and args.workers is None
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "--checkpoint", "a.pt", "--data", "d", "--out", "o", "--precision", "fp8"])
    seen = {}

    def fake_fit(config, resume=False, tracker=None, **options):
        seen["config"] = config
        raise ValueError("stop here")

    monkeypatch.setattr("cryokit.training.loop.fit", fake_fit)
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--precision", "bf16"]
    assert main([*argv, "--set", "tracking.enabled=false"]) == 2
    assert seen["config"].train.val_precision == "bf16"


def test_a_bad_validation_precision_fails_before_training(tmp_path):
    from cryokit.config import apply_overrides, load_config
    from cryokit.training.loop import fit

    config = apply_overrides(load_config(None), [f"data.root={tmp_path}", "train.val_precision=fp8"])
    with pytest.raises(ValueError, match="precision must be one of"):
        fit(config, progress=False)


@pytest.mark.parametrize(
    "flags, native",
    [("fpu avx2 avx512f avx512_bf16 sse", True), ("fpu avx2 amx_bf16 amx_tile", True), ("fpu avx2 avx512f", False)],
)
def test_cpu_native_bf16_reads_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\n")
    assert device_module.cpu_native_bf16(str(cpuinfo)) is native
    assert device_module.cpu_native_bf16(str(tmp_path / "missing")) is False  # no /proc: not native
