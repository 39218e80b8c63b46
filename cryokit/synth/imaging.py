"""The imaging chain, all in Fourier space: CTF, missing wedge, noise, and one filter per tomo type.

``D`` is the density's spectrum and ``N`` white noise (the same draw for every tomo type, as all types
come from one tilt series). With ``W`` the missing-wedge mask (tilt about y, +-``tilt_range_degrees``),
``C`` the CTF with its envelope and ``G`` a Gaussian low-pass:

* ``wbp``: ``W G' (C D + (1 + boost |k| / k_nyquist) N)`` with a slight low-pass ``G'``: grainy and
  streaky, noise rising with frequency.
* ``denoised``: ``W G (C D + N)``: the same data, smoothed.
* ``ctfdeconvolved``: ``W (C D + N) C / (C^2 + 0.1)``: the CTF phase-flipped and amplified.
* ``isonetcorrected``: ``G (C D) + 0.7 W G N``: the wedge filled in for the signal.

Noise level: ``snr`` is the power of a reference particle (an unrotated ribosome of density 1) after
``C W``, per voxel of its catalog ball, over the white-noise power. It does not depend on how many
particles or how much clutter a run holds.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from cryokit.coords import (
    length_angstrom_to_voxels_zyx,
    radius_angstrom_to_voxels,
    voxel_zyx_to_angstrom_xyz,
    voxels_to_angstrom,
)
from cryokit.particles import particle
from cryokit.synth.config import SimulationConfig
from cryokit.synth.shapes import particle_template, render_template, template_extent_angstrom

__all__ = ["fourier_grid", "ctf", "wedge_mask", "noise_sigma", "image_tomograms"]

_ELECTRON_WAVELENGTH_ANGSTROM = 0.01969  # 300 kV
_REFERENCE_PARTICLE = "ribosome"
_WBP_SIGMA_VOXELS = 0.6  # the slight smoothing of a reconstruction from binned projections
_WORKERS = -1  # all cores for scipy.fft


def fourier_grid(shape_zyx: tuple[int, int, int], spacing_zyx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies (1/Angstrom) of an ``rfftn`` of a (Z, Y, X) volume: kz (Z,1,1), ky (1,Y,1), kx (1,1,X//2+1)."""
    kz = scipy.fft.fftfreq(shape_zyx[0], d=spacing_zyx[0]).astype(np.float32)[:, None, None]
    ky = scipy.fft.fftfreq(shape_zyx[1], d=spacing_zyx[1]).astype(np.float32)[None, :, None]
    kx = scipy.fft.rfftfreq(shape_zyx[2], d=spacing_zyx[2]).astype(np.float32)[None, None, :]
    return kz, ky, kx


def ctf(k2: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """Phase-contrast transfer at squared frequency ``k2`` (1/A^2); negative at low k: density is dark."""
    chi = np.float32(np.pi * _ELECTRON_WAVELENGTH_ANGSTROM * config.defocus_um * 1e4) * k2
    amplitude = np.float32(config.amplitude_contrast)
    transfer = -(np.sqrt(1 - amplitude**2, dtype=np.float32) * np.sin(chi) + amplitude * np.cos(chi))
    transfer *= np.exp(np.float32(-config.bfactor_angstrom2 / 4) * k2)
    return transfer.astype(np.float32)


def wedge_mask(kz: np.ndarray, kx: np.ndarray, tilt_range_degrees: float) -> np.ndarray:
    """Boolean (Z, 1, X') mask of the Fourier components a +-tilt series about y measures."""
    return np.abs(kz) <= np.float32(np.tan(np.radians(tilt_range_degrees))) * np.abs(kx) + 1e-12


def _gaussian(k2: np.ndarray, sigma_angstrom: float) -> np.ndarray:
    return np.exp(np.float32(-2 * np.pi**2 * sigma_angstrom**2) * k2)


def noise_sigma(config: SimulationConfig) -> float:
    """White-noise standard deviation (density units) that gives ``config.snr`` (see module docstring)."""
    spacing_zyx = np.asarray(config.voxel_spacing_angstrom_zyx)
    template = particle_template(_REFERENCE_PARTICLE)
    side = int(2 * np.ceil(length_angstrom_to_voxels_zyx(template_extent_angstrom(template), spacing_zyx).max()) + 16)
    side += side % 2
    box = np.zeros((side,) * 3, dtype=np.float32)
    centre_xyz = voxel_zyx_to_angstrom_xyz(np.full(3, (side - 1) / 2), spacing_zyx)[0]
    render_template(box, template, centre_xyz, np.eye(3), spacing_zyx)
    kz, ky, kx = fourier_grid(box.shape, spacing_zyx)
    transfer = ctf(kz**2 + ky**2 + kx**2, config) * wedge_mask(kz, kx, config.tilt_range_degrees)
    filtered = scipy.fft.irfftn(scipy.fft.rfftn(box) * transfer, s=box.shape)
    radius_voxels = radius_angstrom_to_voxels(particle(_REFERENCE_PARTICLE).radius_angstrom, spacing_zyx)
    power_per_particle_voxel = float(np.sum(filtered.astype(np.float64) ** 2)) / (4 / 3 * np.pi * radius_voxels**3)
    return float(np.sqrt(power_per_particle_voxel / config.snr))


def _white_noise_spectrum(shape_zyx: tuple[int, int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Spectrum of real white noise of std ``sigma`` (complex64, rfft layout): E|N_k|^2 = n sigma^2."""
    rfft_shape = (shape_zyx[0], shape_zyx[1], shape_zyx[2] // 2 + 1)
    noise = rng.standard_normal((*rfft_shape, 2), dtype=np.float32).view(np.complex64)[..., 0]
    noise *= np.float32(sigma * np.sqrt(np.prod(shape_zyx) / 2))
    return noise


def _filters(shape_zyx, config: SimulationConfig) -> dict[str, np.ndarray]:
    spacing_zyx = np.asarray(config.voxel_spacing_angstrom_zyx)
    kz, ky, kx = fourier_grid(shape_zyx, spacing_zyx)
    k2 = kz**2 + ky**2 + kx**2
    lowpass_sigma_angstrom = voxels_to_angstrom(config.denoise_sigma_voxels, spacing_zyx)
    return {
        "k2": k2,
        "ctf": ctf(k2, config),
        "wedge": wedge_mask(kz, kx, config.tilt_range_degrees).astype(np.float32),
        "lowpass": _gaussian(k2, lowpass_sigma_angstrom),
        "wbp_lowpass": _gaussian(k2, voxels_to_angstrom(_WBP_SIGMA_VOXELS, spacing_zyx)),
        # |k| / k_nyquist with k_nyquist = 1 / (2 voxels)
        "wbp_gain": 1 + np.float32(config.wbp_noise_boost * voxels_to_angstrom(2, spacing_zyx)) * np.sqrt(k2),
    }


def _tomo_spectrum(tomo_type: str, signal: np.ndarray, noise: np.ndarray, f: dict[str, np.ndarray]) -> np.ndarray:
    """The spectrum of one tomo type from ``signal = C D`` and ``noise = N``."""
    if tomo_type == "wbp":
        return (f["wedge"] * f["wbp_lowpass"]) * (signal + f["wbp_gain"] * noise)
    if tomo_type == "denoised":
        return (f["wedge"] * f["lowpass"]) * (signal + noise)
    if tomo_type == "ctfdeconvolved":
        return (f["wedge"] * f["ctf"] / (f["ctf"] ** 2 + np.float32(0.1))) * (signal + noise)
    if tomo_type == "isonetcorrected":
        return f["lowpass"] * (signal + np.float32(0.7) * f["wedge"] * noise)
    raise ValueError(f"unknown tomo type {tomo_type!r}")


def image_tomograms(
    density_zyx: np.ndarray, config: SimulationConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Image a (Z, Y, X) density into ``{tomo_type: volume_zyx}`` (float32), one per ``config.tomo_types``.

    Volumes are scaled so that the white noise before filtering has std ``config.intensity_scale``.
    """
    shape_zyx = density_zyx.shape
    sigma = noise_sigma(config)
    filters = _filters(shape_zyx, config)
    signal = scipy.fft.rfftn(density_zyx.astype(np.float32, copy=False), workers=_WORKERS)
    signal *= filters["ctf"]
    noise = _white_noise_spectrum(shape_zyx, sigma, rng)
    scale = np.float32(config.intensity_scale / sigma)
    volumes = {}
    for tomo_type in config.tomo_types:
        spectrum = _tomo_spectrum(tomo_type, signal, noise, filters)
        volume = scipy.fft.irfftn(spectrum, s=shape_zyx, workers=_WORKERS)
        volume *= scale
        volumes[tomo_type] = volume.astype(np.float32, copy=False)
    return volumes
