"""Whole-tomogram maps from sliding windows, with exact voxel and cell alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryokit.coords import cell_centres_voxel
from cryokit.inference.sliding_window import SlidingWindow, pad_to_stride, sliding_window_maps


def _volume(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(37, 70, 53), (10, 20, 12)])
def test_identity_model_returns_the_volume(shape):
    volume = _volume(shape)
    maps = sliding_window_maps(lambda x: x, volume, SlidingWindow((16, 32, 32), 0.5, 3))
    assert maps.shape == (1, *shape)
    assert torch.allclose(maps[0], volume, atol=1e-5)


@pytest.mark.parametrize("stride", [2, 4])
def test_strided_model_is_stitched_on_whole_cells(stride):
    shape = (38, 66, 53)  # not multiples of the stride
    volume = _volume(shape, 1)
    maps = sliding_window_maps(lambda x: F.avg_pool3d(x, stride), volume, SlidingWindow((16, 32, 32), 0.3), stride)
    cells = tuple(-(-n // stride) for n in shape)
    pad = [p for n, c in zip(shape[::-1], cells[::-1]) for p in (0, c * stride - n)]
    padded = F.pad(volume[None, None], pad, mode="replicate")
    assert maps.shape == (1, *cells)
    assert torch.allclose(maps, F.avg_pool3d(padded, stride)[0], atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_a_dot_maps_back_to_its_voxel(stride):
    shape, dot = (40, 72, 60), (23, 49, 7)
    volume = torch.zeros(shape)
    volume[dot] = 1.0

    def heatmap(x):  # two channels, stride s
        return F.max_pool3d(torch.cat([x, -x], 1), stride)

    maps = sliding_window_maps(heatmap, volume, SlidingWindow((16, 32, 32), 0.25, 2), stride)
    assert maps.shape[0] == 2
    cell = np.unravel_index(int(maps[0].argmax()), maps.shape[1:])
    assert all(c * stride <= d < (c + 1) * stride for c, d in zip(cell, dot))
    assert np.abs(cell_centres_voxel(cell, stride) - dot).max() <= (stride - 1) / 2
    assert maps[0].max() == pytest.approx(1.0)


def test_dict_outputs_and_a_model_that_ignores_the_stride():
    volume = _volume((24, 40, 36), 2)

    def model(x):
        return {"mean": F.avg_pool3d(x, 2), "max": F.max_pool3d(x, 2)}

    maps = sliding_window_maps(model, volume, SlidingWindow((16, 16, 16), overlap=0.5), output_stride=2)
    assert maps["mean"].shape == maps["max"].shape == (1, 12, 20, 18)
    assert torch.all(maps["max"] >= maps["mean"])
    with pytest.raises(ValueError, match="output_stride=2"):
        sliding_window_maps(lambda x: x, volume, SlidingWindow((16, 16, 16)), output_stride=2)


def test_pad_to_stride_pads_the_high_end_only():
    volume = _volume((5, 6, 7), 3)
    padded = pad_to_stride(volume, 4, (8, 0, 0))
    assert padded.shape == (8, 8, 8)
    assert torch.equal(padded[:5, :6, :7], volume)
    assert torch.equal(padded[7, :6, :7], volume[4])  # replicated from the last plane
    whole = volume[:4, :4, :4]
    assert pad_to_stride(whole, 2) is whole  # already whole cells: nothing to pad


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"output_stride": 3}, "output_stride"),
        ({"size_zyx": (16, 30, 32), "output_stride": 4}, "size_zyx"),
        ({"overlap": 1.0}, "overlap"),
    ],
)
def test_bad_inference_arguments_raise(kwargs, name):
    window = {"size_zyx": kwargs.pop("size_zyx", (16, 16, 16)), "overlap": kwargs.pop("overlap", 0.25)}
    with pytest.raises(ValueError, match=name):
        sliding_window_maps(lambda x: x, torch.zeros(20, 20, 20), SlidingWindow(**window), **kwargs)
