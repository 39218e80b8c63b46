"""Augmentations that change what a patch looks like, never where anything is: intensity and imaging.

A model trained on one simulator (or on a handful of real tomograms) must not learn that simulator's
grey levels, noise, blur or missing wedge. These transforms vary them per patch; picks never move.

* Intensity, with TorchIO's transforms: ``RandomGamma`` (sign-preserving power law), ``RandomBlur``,
  ``RandomBiasField`` (a smooth multiplicative field, like uneven ice or illumination), ``RandomNoise``;
  and a linear ``v * (1 + a) + b``.
* Imaging, in Fourier space (``torch.fft``): a random band-pass (a Gaussian low-pass and a Gaussian
  high-pass, as different reconstructions and denoisers leave different bands) and an extra missing
  wedge of random tilt range and tilt axis (the x-y direction the tilt series turns about).

All randomness comes from the caller's ``torch.Generator``: the draws are plain numbers in an
``AppearanceParams``, and TorchIO (which draws from torch's global generator) runs under a fixed seed
inside ``torch.random.fork_rng``, so a seed reproduces a patch in any loader worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["AppearanceParams", "draw_appearance", "apply_appearance", "bandpass_filter", "wedge_filter"]

# Reflect-padding (voxels per side) before a Fourier filter, so the patch does not wrap around.
_FOURIER_PAD = 8


@dataclass(frozen=True)
class AppearanceParams:
    """Every random choice of the appearance transforms of one patch (None: not applied).

    Attributes:
        lowpass_sigma_voxels: Gaussian low-pass sigma. highpass_sigma_voxels: Gaussian high-pass sigma
            (removes structure larger than about this).
        wedge: (tilt range in degrees, tilt axis angle in the x-y plane in degrees from y).
        torchio_seed: seed of the TorchIO transforms (gamma, blur, bias field, noise) drawn for this patch.
        torchio: which of them apply, in order, with their strength: ("gamma", largest |log gamma|),
            ("blur", largest sigma in voxels), ("bias", polynomial coefficient), ("noise", its std).
        linear: (a, b) of ``v * (1 + a) + b``.
    """

    lowpass_sigma_voxels: float | None = None
    highpass_sigma_voxels: float | None = None
    wedge: tuple[float, float] | None = None
    torchio_seed: int | None = None
    torchio: tuple[tuple[str, float], ...] = ()
    linear: tuple[float, float] | None = None


def _uniform(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return float(low + (high - low) * torch.rand(1, generator=generator, dtype=torch.float64))


def _happens(generator: torch.Generator, p: float) -> bool:
    return p > 0 and _uniform(generator) < p


def draw_appearance(augmenter, generator: torch.Generator) -> AppearanceParams:
    """Draw the appearance choices of ``augmenter`` (a ``cryokit.data.augment.Augmenter``) in a fixed order."""
    a = augmenter
    lowpass = highpass = wedge = linear = None
    if a.bandpass_lowpass_voxels > 0 and _happens(generator, a.bandpass_p):
        lowpass = _uniform(generator, 0.0, a.bandpass_lowpass_voxels)
    if a.bandpass_highpass_voxels > 0 and _happens(generator, a.bandpass_p):
        highpass = _uniform(generator, a.bandpass_highpass_voxels, 3 * a.bandpass_highpass_voxels)
    if _happens(generator, a.wedge_p):
        wedge = (_uniform(generator, *a.wedge_tilt_degrees), _uniform(generator, 0.0, 180.0))
    families = (
        ("gamma", a.gamma_p, a.gamma_log),
        ("blur", a.blur_p, a.blur_std_voxels),
        ("bias", a.bias_p, a.bias_coefficient),
        ("noise", a.noise_p, a.noise_std),
    )
    chosen = [(name, float(strength)) for name, p, strength in families if strength > 0 and _happens(generator, p)]
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if chosen else None
    if a.intensity_fraction > 0 and _happens(generator, a.intensity_p):
        linear = (
            _uniform(generator, -a.intensity_fraction, a.intensity_fraction),
            _uniform(generator, -a.intensity_fraction, a.intensity_fraction),
        )
    return AppearanceParams(lowpass, highpass, wedge, seed, tuple(chosen), linear)


def _frequencies(shape_zyx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cycles per voxel of an ``rfftn`` of a (Z, Y, X) grid: kz (Z,1,1), ky (1,Y,1), kx (1,1,X//2+1)."""
    kz = torch.fft.fftfreq(shape_zyx[0])[:, None, None]
    ky = torch.fft.fftfreq(shape_zyx[1])[None, :, None]
    kx = torch.fft.rfftfreq(shape_zyx[2])[None, None, :]
    return kz, ky, kx


def bandpass_filter(
    shape_zyx: Sequence[int], lowpass_sigma_voxels: float | None, highpass_sigma_voxels: float | None
) -> torch.Tensor:
    """(Z, Y, X//2+1) transfer of a Gaussian low-pass times a Gaussian high-pass (either may be None)."""
    kz, ky, kx = _frequencies(shape_zyx)
    k2 = kz**2 + ky**2 + kx**2
    transfer = torch.ones_like(k2)
    if lowpass_sigma_voxels:
        transfer = transfer * torch.exp(-2 * math.pi**2 * lowpass_sigma_voxels**2 * k2)
    if highpass_sigma_voxels:
        transfer = transfer * (1 - torch.exp(-2 * math.pi**2 * highpass_sigma_voxels**2 * k2))
    return transfer


def wedge_filter(shape_zyx: Sequence[int], tilt_range_degrees: float, axis_degrees: float) -> torch.Tensor:
    """(Z, Y, X//2+1) mask of the components a +-``tilt_range_degrees`` tilt series measures when it turns
    about the x-y direction at ``axis_degrees`` from y: ``|kz| <= tan(tilt) * |k across the axis|``.
    The zero frequency is kept (the mean does not change)."""
    kz, ky, kx = _frequencies(shape_zyx)
    angle = math.radians(axis_degrees)
    across = (kx * math.cos(angle) - ky * math.sin(angle)).abs()  # the in-plane component normal to the axis
    mask = (kz.abs() <= math.tan(math.radians(tilt_range_degrees)) * across + 1e-9).float()
    mask[0, 0, 0] = 1.0
    return mask


def _fourier(image_zyx: torch.Tensor, params: AppearanceParams) -> torch.Tensor:
    padded = F.pad(image_zyx[None, None], [_FOURIER_PAD] * 6, mode="reflect")[0, 0]
    transfer = bandpass_filter(padded.shape, params.lowpass_sigma_voxels, params.highpass_sigma_voxels)
    if params.wedge is not None:
        transfer = transfer * wedge_filter(padded.shape, *params.wedge)
    filtered = torch.fft.irfftn(torch.fft.rfftn(padded.float()) * transfer, s=padded.shape)
    inner = tuple(slice(_FOURIER_PAD, _FOURIER_PAD + n) for n in image_zyx.shape)
    return filtered[inner]


def _torchio(image_zyx: torch.Tensor, params: AppearanceParams) -> torch.Tensor:
    import torchio as tio  # here: only training patches need it (the Kaggle image has no TorchIO)

    make = {
        "gamma": lambda s: tio.RandomGamma(log_gamma=(-s, s)),
        "blur": lambda s: tio.RandomBlur(std=(0.0, s)),
        "bias": lambda s: tio.RandomBiasField(coefficients=s, order=3),
        "noise": lambda s: tio.RandomNoise(mean=0.0, std=(s, s)),
    }
    transform = tio.Compose([make[name](strength) for name, strength in params.torchio])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.torchio_seed)
        subject = transform(tio.Subject(image=tio.ScalarImage(tensor=image_zyx[None].float())))
    return subject["image"].data[0]


def apply_appearance(image_zyx: torch.Tensor, params: AppearanceParams) -> torch.Tensor:
    """The (Z, Y, X) patch with the drawn appearance changes: Fourier filters, TorchIO's, then linear."""
    if params.lowpass_sigma_voxels or params.highpass_sigma_voxels or params.wedge is not None:
        image_zyx = _fourier(image_zyx, params)
    if params.torchio:
        image_zyx = _torchio(image_zyx, params)
    if params.linear is not None:
        image_zyx = image_zyx * (1 + params.linear[0]) + params.linear[1]
    return image_zyx
