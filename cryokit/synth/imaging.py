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

Randomized runs (``domain`` given, ``cryokit.synth.domains``) change the chain: the wedge's tilt axis
turns in the x-y plane; Fourier space is measured on one plane per tilt (``tilt_step_degrees``, each
plane as thick as the ice, Crowther) mixed with the continuous wedge by ``streak_strength``, which is
what gives weighted back-projection its streaks (``S`` below); the noise is coloured; ``denoised`` is
made by the drawn reconstruction style: ``gaussian`` (``S G``), ``butterworth`` (a sharp low-pass),
``diffusion`` (edge-preserving Perona-Malik steps after a light low-pass), ``median`` (a 3x3x3 median
after a light low-pass) or ``wbp`` (as the ``wbp`` tomo type); and the output gets an offset.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

from cryokit.coords import (
    length_angstrom_to_voxels_zyx,
    radius_angstrom_to_voxels,
    voxel_zyx_to_angstrom_xyz,
    voxels_to_angstrom,
)
from cryokit.particles import particle
from cryokit.synth.config import SimulationConfig
from cryokit.synth.domains import DomainParameters
from cryokit.synth.shapes import particle_template, render_template, template_extent_angstrom

__all__ = [
    "fourier_grid",
    "ctf",
    "wedge_mask",
    "tilted_wedge_mask",
    "tilt_plane_sampling",
    "noise_sigma",
    "image_tomograms",
]

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


def tilted_wedge_mask(kz: np.ndarray, ky: np.ndarray, kx: np.ndarray, tilt_range_degrees: float, axis_degrees: float):
    """Boolean (Z, Y, X') wedge mask for a tilt axis turned ``axis_degrees`` from y in the x-y plane."""
    angle = np.radians(axis_degrees)
    k_perp = np.abs(kx * np.float32(np.cos(angle)) - ky * np.float32(np.sin(angle)))
    return np.abs(kz) <= np.float32(np.tan(np.radians(tilt_range_degrees))) * k_perp + 1e-12


def tilt_plane_sampling(
    kz: np.ndarray, ky: np.ndarray, kx: np.ndarray, domain: DomainParameters, thickness_angstrom: float
) -> np.ndarray:
    """(Z, Y, X') float32 weight of the Fourier components a discrete tilt series measures.

    Tilt ``t`` measures the central plane through the tilt axis whose direction in the (k_perp, k_z)
    plane is at angle ``t``; a plane is ``1 / thickness`` thick. The weight falls from 1 on a plane to
    0 at its edge; components beyond the tilt range lie on no plane (the missing wedge).
    """
    angle = np.radians(domain.tilt_axis_degrees)
    k_perp = kx * np.float32(np.cos(angle)) - ky * np.float32(np.sin(angle))
    step, limit = np.float32(np.radians(domain.tilt_step_degrees)), np.float32(np.radians(domain.tilt_range_degrees))
    half_width = np.float32(0.5 / thickness_angstrom)
    weight = np.empty(np.broadcast_shapes(kz.shape, k_perp.shape), np.float32)
    for i in range(kz.shape[0]):  # one z frequency at a time: small temporaries
        kz_i = kz[i]
        psi = np.arctan2(kz_i, k_perp)
        psi = (psi + np.float32(np.pi / 2)) % np.float32(np.pi) - np.float32(np.pi / 2)  # fold k and -k
        nearest = np.clip(np.round((psi + limit) / step) * step - limit, -limit, limit)
        distance = np.sqrt(kz_i**2 + k_perp**2) * np.abs(np.sin(psi - nearest))
        weight[i] = np.clip(1 - distance / half_width, 0, 1)
    weight[0, 0, 0] = 1
    return weight


# Spatial frequencies (1/A) where the particles live: noise colour keeps the noise power there.
_PARTICLE_BAND_PER_ANGSTROM = (1 / 300.0, 1 / 60.0)


def _noise_colour(k2: np.ndarray, colour: float, spacing_zyx) -> np.ndarray:
    """Amplitude filter ``(|k| + k0)^colour`` (k0 a twentieth of Nyquist), scaled so that the noise power
    in the particles' band (periods of 60 to 300 A) is unchanged: colour moves noise out of or into the
    other frequencies, so the SNR keeps its meaning."""
    k_nyquist = 1 / voxels_to_angstrom(2, spacing_zyx)
    k = np.sqrt(k2)
    gain = (k + np.float32(0.05 * k_nyquist)) ** np.float32(colour)
    band = (k >= _PARTICLE_BAND_PER_ANGSTROM[0]) & (k <= _PARTICLE_BAND_PER_ANGSTROM[1])
    reference = np.mean(gain[band].astype(np.float64) ** 2) if band.any() else np.mean(gain.astype(np.float64) ** 2)
    return (gain / np.sqrt(reference)).astype(np.float32)


def _diffuse(volume: np.ndarray, steps: int = 4, rate: float = 0.12) -> np.ndarray:
    """Perona-Malik diffusion: smooths flat regions, keeps edges (conductance from the volume's spread)."""
    volume = volume.astype(np.float32, copy=True)
    kappa = np.float32(1.5 * np.std(volume))
    for _ in range(steps):
        update = np.zeros_like(volume)
        for axis in range(3):
            forward = np.diff(volume, axis=axis, append=np.take(volume, [-1], axis=axis))
            flux = forward * np.exp(-((forward / kappa) ** 2))
            update += flux
            update -= np.roll(flux, 1, axis=axis)
        volume += np.float32(rate) * update
    return volume


def _randomized_filters(shape_zyx, config: SimulationConfig, domain: DomainParameters, thickness_angstrom: float):
    spacing_zyx = np.asarray(config.voxel_spacing_angstrom_zyx)
    kz, ky, kx = fourier_grid(shape_zyx, spacing_zyx)
    filters = _filters(shape_zyx, config)
    wedge = tilted_wedge_mask(kz, ky, kx, config.tilt_range_degrees, domain.tilt_axis_degrees).astype(np.float32)
    planes = tilt_plane_sampling(kz, ky, kx, domain, thickness_angstrom)
    strength = np.float32(domain.streak_strength)
    filters["wedge"] = wedge
    filters["sampling"] = (1 - strength) * wedge + strength * planes
    filters["colour"] = _noise_colour(filters["k2"], domain.noise_colour, spacing_zyx)
    sigma_angstrom = voxels_to_angstrom(config.denoise_sigma_voxels, spacing_zyx)
    cutoff = np.float32(0.19 / sigma_angstrom)  # where the Gaussian of this sigma has fallen to half
    filters["butterworth"] = 1 / np.sqrt(1 + (filters["k2"] / cutoff**2) ** 4)
    filters["light_lowpass"] = _gaussian(filters["k2"], 0.5 * sigma_angstrom)
    return filters


def _randomized_volume(tomo_type: str, style: str, signal, noise, f, shape_zyx) -> np.ndarray:
    """One tomo type of a randomized run (the spatial filters of the denoising styles applied here)."""
    if tomo_type == "wbp" or (tomo_type == "denoised" and style == "wbp"):
        spectrum = (f["sampling"] * f["wbp_lowpass"]) * (signal + f["wbp_gain"] * noise)
    elif tomo_type == "denoised" and style == "gaussian":
        spectrum = (f["sampling"] * f["lowpass"]) * (signal + noise)
    elif tomo_type == "denoised" and style == "butterworth":
        spectrum = (f["sampling"] * f["butterworth"]) * (signal + noise)
    elif tomo_type == "denoised":
        spectrum = (f["sampling"] * f["light_lowpass"]) * (signal + noise)
    else:
        return scipy.fft.irfftn(_tomo_spectrum(tomo_type, signal, noise, f), s=shape_zyx, workers=_WORKERS)
    volume = scipy.fft.irfftn(spectrum, s=shape_zyx, workers=_WORKERS)
    if tomo_type == "denoised" and style == "diffusion":
        volume = _diffuse(volume)
    elif tomo_type == "denoised" and style == "median":
        volume = scipy.ndimage.median_filter(volume, size=3, mode="reflect")
    return volume


def image_tomograms(
    density_zyx: np.ndarray,
    config: SimulationConfig,
    rng: np.random.Generator,
    domain: DomainParameters | None = None,
    ice_thickness_angstrom: float | None = None,
) -> dict[str, np.ndarray]:
    """Image a (Z, Y, X) density into ``{tomo_type: volume_zyx}`` (float32), one per ``config.tomo_types``.

    Volumes are scaled so that the white noise before filtering has std ``config.intensity_scale``.
    ``domain`` (randomized runs) selects the randomized chain of the module docstring;
    ``ice_thickness_angstrom`` (default the z extent) sets the thickness of the tilt planes.
    """
    shape_zyx = density_zyx.shape
    sigma = noise_sigma(config)
    if domain is None:
        filters = _filters(shape_zyx, config)
    else:
        thickness = ice_thickness_angstrom or voxels_to_angstrom(shape_zyx[0], config.voxel_spacing_angstrom_zyx)
        filters = _randomized_filters(shape_zyx, config, domain, thickness)
    signal = scipy.fft.rfftn(density_zyx.astype(np.float32, copy=False), workers=_WORKERS)
    signal *= filters["ctf"]
    noise = _white_noise_spectrum(shape_zyx, sigma, rng)
    if domain is not None:
        noise *= filters["colour"]
    scale = np.float32(config.intensity_scale / sigma)
    volumes = {}
    for tomo_type in config.tomo_types:
        if domain is None:
            spectrum = _tomo_spectrum(tomo_type, signal, noise, filters)
            volume = scipy.fft.irfftn(spectrum, s=shape_zyx, workers=_WORKERS)
        else:
            volume = _randomized_volume(tomo_type, domain.recon_style, signal, noise, filters, shape_zyx)
        volume *= scale
        if domain is not None:
            volume += np.float32(domain.intensity_offset * config.intensity_scale)
        volumes[tomo_type] = volume.astype(np.float32, copy=False)
    return volumes
