"""Test-time augmentation lines every transform's maps up with the tomogram, vectors included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryokit.inference.predict import predict_maps
from cryokit.inference.sliding_window import SlidingWindow
from cryokit.inference.tta import group_ttas, tta_transforms


def _gradient_field(volume: torch.Tensor) -> torch.Tensor:
    """(3, Z, Y, X) central-difference gradient (d/dz, d/dy, d/dx): a vector field that turns with the grid."""
    return torch.stack([torch.from_numpy(g) for g in np.gradient(volume.numpy())])


@pytest.mark.parametrize("tta", ["flips", "flips+rot90"])
def test_undo_maps_vector_channels_back(tta):
    volume = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = torch.cat([volume[None], _gradient_field(volume)])  # scalar channel + vector (1, 2, 3)
    for transform in tta_transforms(tta):
        moved = transform.apply(volume)
        maps = torch.cat([moved[None], _gradient_field(moved)])
        torch.testing.assert_close(transform.undo(maps, [(1, 2, 3)]), expected)


class _PointwiseNet(torch.nn.Module):
    """A network that commutes with flips and turns: per-voxel maps, optionally 2x average-pooled."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        maps = torch.cat([x, x**2, torch.tanh(x)], dim=1)
        return F.avg_pool3d(maps, self.stride) if self.stride > 1 else maps


@pytest.mark.parametrize("stride, shape_zyx", [(1, (20, 36, 36)), (2, (20, 36, 36)), (2, (21, 35, 37))])
def test_tta_of_an_equivariant_net_changes_nothing(stride, shape_zyx):
    volume = np.random.default_rng(1).normal(size=shape_zyx).astype(np.float32)
    patch = SlidingWindow(size_zyx=(8, 16, 16), overlap=0.5, batch_size=4)
    net = _PointwiseNet(stride)
    plain = predict_maps(net, lambda out: out, volume, patch, output_stride=stride)
    assert plain.shape == (3, *(-(-n // stride) for n in shape_zyx))
    for tta in ("flips", "flips+rot90"):
        averaged = predict_maps(net, lambda out: out, volume, patch, output_stride=stride, tta=tta)
        torch.testing.assert_close(averaged, plain, atol=1e-5, rtol=1e-5)


def test_unknown_tta_is_refused():
    with pytest.raises(ValueError, match="tta must be one of"):
        tta_transforms("rot45")


def test_each_ensemble_group_gets_one_tta_and_a_wrong_count_or_choice_is_refused():
    assert group_ttas("flips", 2) == ("flips", "flips")  # one choice: every group
    assert group_ttas(["flips", "none"], 2) == ("flips", "none")  # one per group, in order
    with pytest.raises(ValueError, match="3 TTA choices .* for 2 group"):
        group_ttas(["flips", "none", "none"], 2)
    with pytest.raises(ValueError, match="tta must be one of .* got 'mirror'"):
        group_ttas(["flips", "mirror"], 2)
    with pytest.raises(ValueError, match="a list of them, got 8"):
        group_ttas(8, 1)


def test_maps_of_several_models_are_their_mean():
    """Maps are summed in place and divided once: two models average, a model with itself is itself."""
    from cryokit.inference.predict import predict_volume_picks

    class _Scaled(torch.nn.Module):
        def __init__(self, factor: float):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return torch.sigmoid(self.factor * x).repeat(1, 2, 1, 1, 1)

    class _Recorder:
        output_stride, vector_channels = 1, ()

        def dense_maps(self, outputs):
            return outputs

        def decode(self, maps, spacing, run, floors=None):
            self.maps = maps.clone()
            return maps

    volume = np.random.default_rng(2).normal(size=(12, 20, 20)).astype(np.float32)
    patch = SlidingWindow(size_zyx=(8, 16, 16), overlap=0.5, batch_size=2)
    one, other = _Scaled(1.0), _Scaled(3.0)
    alone = {m: predict_maps(m, lambda out: out, volume, patch) for m in (one, other)}
    task = _Recorder()
    predict_volume_picks([one, other], task, volume, (10.0,) * 3, "r", patch)
    torch.testing.assert_close(task.maps, (alone[one] + alone[other]) / 2)
    predict_volume_picks([one, one], task, volume, (10.0,) * 3, "r", patch)
    torch.testing.assert_close(task.maps, alone[one])
    predict_volume_picks([one], task, volume, (10.0,) * 3, "r", patch)
    assert torch.equal(task.maps, alone[one])  # one model: the maps untouched (no division by 1)
