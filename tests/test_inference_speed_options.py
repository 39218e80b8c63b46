"""Every speed option of inference gives the default path's maps; the costing arithmetic is exact."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cryokit.data.normalise import normalise_tomogram, normalise_tomogram_on
from cryokit.inference.device import autocast
from cryokit.inference.predict import predict_maps
from cryokit.inference.sliding_window import SlidingWindow, sliding_window_maps
from cryokit.inference.speed import InferenceOptions, count_windows, forward_flops, prepare_for_inference
from cryokit.io import open_tomogram, write_tomogram
from cryokit.models.unet import segmentation_unet

PATCH = SlidingWindow(size_zyx=(16, 32, 32), overlap=0.25, batch_size=2)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _net(output_stride: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return segmentation_unet(channels=(4, 8, 16), strides=(2, 2), output_stride=output_stride).eval()


def _softmax(outputs: torch.Tensor) -> torch.Tensor:
    return outputs.float().softmax(dim=1)[:, 1:]


def _volume(shape_zyx=(20, 40, 44)) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape_zyx).astype(np.float32)


@pytest.mark.parametrize("output_stride", [1, 2])
def test_channels_last_gives_the_default_maps(output_stride):
    plain = predict_maps(_net(output_stride), _softmax, _volume(), PATCH, output_stride)
    options = InferenceOptions(channels_last=True)
    fast = predict_maps(
        prepare_for_inference(_net(output_stride), options), _softmax, _volume(), PATCH, output_stride, options=options
    )
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_volume_on_device_gives_the_default_maps(tmp_path, device):
    path = write_tomogram(tmp_path / "t.zarr", 3.0 + 2.0 * _volume(), 10.0, chunks_zyx=(8, 16, 16))
    tomogram = open_tomogram(path)
    on_device = normalise_tomogram_on(tomogram, device)
    assert on_device.device.type == device and on_device.dtype == torch.float32
    torch.testing.assert_close(on_device.cpu(), torch.from_numpy(normalise_tomogram(tomogram)), atol=1e-5, rtol=0)
    net = _net().to(device)
    plain = predict_maps(net, _softmax, normalise_tomogram(tomogram), PATCH, device=device, amp=False)
    stitched_there = predict_maps(net, _softmax, on_device, PATCH, tta="none", device=device, amp=False)
    assert stitched_there.device.type == device
    torch.testing.assert_close(stitched_there.cpu(), plain, atol=1e-5, rtol=1e-5)


def test_prepare_for_inference_keeps_the_weights():
    net, reference = _net(), _net()
    prepared = prepare_for_inference(net, InferenceOptions(channels_last=True))
    assert not prepared.training
    conv = next(m for m in prepared.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for a, b in zip(prepared.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.skipif(
    not os.environ.get("CRYOKIT_TEST_COMPILE"),
    reason="torch.compile takes about 30 s on 2 cores; set CRYOKIT_TEST_COMPILE=1",
)
def test_compile_gives_the_default_maps():
    plain = predict_maps(_net(), _softmax, _volume(), PATCH)
    compiled = prepare_for_inference(_net(), InferenceOptions(compile=True))
    torch.testing.assert_close(predict_maps(compiled, _softmax, _volume(), PATCH), plain, atol=1e-5, rtol=1e-5)


def test_cpu_bf16_is_the_inference_default_where_native_and_close(monkeypatch):
    from cryokit.inference import device as device_module

    monkeypatch.setattr(device_module, "cpu_native_bf16", lambda: True)
    net, volume = _net(), _volume()
    with autocast(torch.device("cpu"), True):
        assert net(torch.zeros(1, 1, 16, 32, 32)).dtype == torch.float32
    with autocast(torch.device("cpu"), True, cpu_bf16=True):
        assert net(torch.zeros(1, 1, 16, 32, 32)).dtype == torch.bfloat16
    plain = predict_maps(net, _softmax, volume, PATCH, options=InferenceOptions(cpu_bf16=False))
    fast = predict_maps(net, _softmax, volume, PATCH)  # the default options
    assert 0 < (fast - plain).abs().max() < 0.05
    monkeypatch.setattr(device_module, "cpu_native_bf16", lambda: False)
    torch.testing.assert_close(predict_maps(net, _softmax, volume, PATCH), plain)  # no native bf16: fp32


@pytest.mark.parametrize("k, c_in, c_out, stride, shape_zyx", [(3, 2, 5, 1, (6, 7, 8)), (2, 1, 4, 2, (8, 8, 6))])
def test_forward_flops_of_a_conv3d_is_analytic(k, c_in, c_out, stride, shape_zyx):
    conv = torch.nn.Conv3d(c_in, c_out, k, stride=stride, padding=k // 2 if stride == 1 else 0)
    outputs = conv(torch.zeros(1, c_in, *shape_zyx)).shape[2:].numel()
    assert forward_flops(conv, (1, c_in, *shape_zyx)) == 2 * k**3 * c_in * c_out * outputs


@pytest.mark.parametrize(
    "shape_zyx, overlap, stride",
    [
        ((20, 40, 44), 0.25, 1),
        ((20, 40, 44), 0.5, 2),
        ((16, 32, 32), 0.25, 1),
        ((9, 70, 33), 0.0, 2),
        ((37, 95, 64), 0.6, 1),
    ],
)
def test_count_windows_matches_the_windows_run(shape_zyx, overlap, stride):
    seen = []

    def model_fn(windows: torch.Tensor) -> torch.Tensor:
        seen.append(len(windows))
        return torch.nn.functional.avg_pool3d(windows, stride) if stride > 1 else windows

    sliding_window_maps(model_fn, np.zeros(shape_zyx, np.float32), SlidingWindow(PATCH.size_zyx, overlap, 3), stride)
    assert sum(seen) == count_windows(shape_zyx, PATCH.size_zyx, overlap, stride)
