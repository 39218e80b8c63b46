"""Appearance augmentations: the Fourier filters do what they say, TorchIO runs reproducibly, nothing moves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryokit.data.appearance import AppearanceParams, apply_appearance, bandpass_filter, draw_appearance, wedge_filter
from cryokit.data.augment import Augmenter


def _noise(shape=(24, 40, 40), seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _power_above(image: torch.Tensor, cycles_per_voxel: float) -> float:
    spectrum = torch.fft.rfftn(image).abs() ** 2
    kz, ky, kx = (
        torch.fft.fftfreq(image.shape[0])[:, None, None],
        torch.fft.fftfreq(image.shape[1])[None, :, None],
        torch.fft.rfftfreq(image.shape[2])[None, None, :],
    )
    return float(spectrum[(kz**2 + ky**2 + kx**2).sqrt() > cycles_per_voxel].sum())


def test_bandpass_transfer_is_a_gaussian_lowpass_times_highpass():
    transfer = bandpass_filter((16, 16, 16), 1.5, 6.0)
    assert transfer[0, 0, 0] == 0  # the high-pass removes the mean
    k = 0.25  # cycles per voxel along x
    expected = math.exp(-2 * math.pi**2 * 1.5**2 * k**2) * (1 - math.exp(-2 * math.pi**2 * 36 * k**2))
    assert float(transfer[0, 0, 4]) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(bandpass_filter((8, 8, 8), None, None), torch.ones(8, 8, 5))


def test_lowpass_removes_high_frequencies_and_keeps_the_patch_size():
    image = _noise()
    out = apply_appearance(image, AppearanceParams(lowpass_sigma_voxels=1.5))
    assert out.shape == image.shape
    assert _power_above(out, 0.3) < 0.01 * _power_above(image, 0.3)


@pytest.mark.parametrize("axis_degrees", [0.0, 90.0, 30.0])
def test_wedge_keeps_what_a_tilt_series_about_the_axis_measures(axis_degrees):
    mask = wedge_filter((16, 16, 16), 45.0, axis_degrees)
    angle = math.radians(axis_degrees)
    # A component along z with a little in-plane frequency across the axis is missing; far across it is kept.
    across_y, across_x = -math.sin(angle), math.cos(angle)  # unit vector across the axis, (ky, kx)
    for kz, reach, kept in ((4, 1, False), (2, 5, True)):
        ky, kx = round(reach * across_y), round(reach * across_x)
        if kx < 0:  # rfft layout holds kx >= 0: use the conjugate-symmetric component
            kz, ky, kx = -kz, -ky, -kx
        assert bool(mask[kz % 16, ky % 16, kx]) == kept, (kz, ky, kx)
    assert mask[0, 0, 0] == 1


def test_draws_are_reproducible_and_torchio_runs_under_its_own_seed():
    augmenter = Augmenter(
        gamma_p=1.0,
        gamma_log=0.3,
        blur_p=1.0,
        blur_std_voxels=1.0,
        bias_p=1.0,
        bias_coefficient=0.3,
        noise_p=1.0,
        noise_std=0.1,
        bandpass_p=1.0,
        bandpass_lowpass_voxels=1.0,
        bandpass_highpass_voxels=8.0,
        wedge_p=1.0,
    )
    first = draw_appearance(augmenter, torch.Generator().manual_seed(3))
    again = draw_appearance(augmenter, torch.Generator().manual_seed(3))
    assert first == again and [name for name, _ in first.torchio] == ["gamma", "blur", "bias", "noise"]
    assert 8.0 <= first.highpass_sigma_voxels <= 24.0 and 45.0 <= first.wedge[0] <= 70.0
    image = _noise(seed=1)
    torch.manual_seed(123)  # the global generator must neither matter nor move
    state = torch.get_rng_state()
    a, b = apply_appearance(image, first), apply_appearance(image, again)
    assert torch.equal(a, b) and not torch.equal(a, image)
    assert torch.equal(torch.get_rng_state(), state)


def test_gamma_is_a_monotone_sign_preserving_map():
    image = _noise(seed=2)
    out = apply_appearance(image, AppearanceParams(torchio_seed=0, torchio=(("gamma", 0.4),)))
    assert torch.equal(torch.sign(out), torch.sign(image))
    order = torch.argsort(image.ravel())
    assert torch.all(torch.diff(out.ravel()[order]) >= 0)
