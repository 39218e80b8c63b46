"""Per-tomogram intensity normalisation and reading normalised regions.

Every tomogram is normalised with robust statistics of its own (median and an IQR-based scale, clipped
at the 0.5th and 99.5th percentiles), computed once per (store, level) from random blocks, so training
patches, validation and prediction see the same numbers. Regions are read in voxels of the level, axes
z, y, x; a region may stick out of the volume (outside voxels are 0, the median after normalising).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cryokit.io.tomogram import Tomogram

__all__ = [
    "IntensityStats",
    "intensity_stats",
    "tomogram_intensity_stats",
    "normalise",
    "normalise_tomogram",
    "normalise_tomogram_on",
    "read_region",
]


@dataclass(frozen=True)
class IntensityStats:
    """Robust intensity statistics of one tomogram: ``(clip(v, low, high) - median) / scale``.

    Attributes:
        median: median intensity.
        scale: robust standard deviation, IQR / 1.349 (equals the std for Gaussian noise).
        low: 0.5th percentile (lower clip bound).
        high: 99.5th percentile (upper clip bound).
    """

    median: float
    scale: float
    low: float
    high: float


def intensity_stats(values: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> IntensityStats:
    """Robust statistics of any array of voxel values (median, IQR-based scale, clip percentiles)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("values must hold at least one voxel")
    low, q25, median, q75, high = np.percentile(values, [percentiles[0], 25, 50, 75, percentiles[1]])
    scale = (q75 - q25) / 1.349
    if not scale > 0:  # constant (or almost constant) data: fall back to the std, then to 1
        scale = float(values.std()) or 1.0
    return IntensityStats(float(median), float(scale), float(low), float(high))


_STATS_CACHE: dict[tuple[str, int], IntensityStats] = {}


def tomogram_intensity_stats(
    tomogram: Tomogram, n_blocks: int = 24, block_zyx: Sequence[int] = (16, 64, 64), seed: int = 0
) -> IntensityStats:
    """Statistics of a tomogram from ``n_blocks`` random blocks, computed once per (path, level).

    The blocks' positions come from a fixed ``seed``, so every loader worker that fills its own cache
    gets the same numbers. About 1.6 M voxels by default; the whole level is never read.
    """
    key = (str(tomogram.path), int(tomogram.level))
    if key not in _STATS_CACHE:
        rng = np.random.default_rng(seed)
        shape = np.asarray(tomogram.shape_zyx)
        block = np.minimum(np.asarray(block_zyx), shape)
        samples = []
        for _ in range(n_blocks):
            start = rng.integers(0, shape - block + 1)
            samples.append(tomogram.read(tuple(slice(s, s + b) for s, b in zip(start, block))).ravel())
        _STATS_CACHE[key] = intensity_stats(np.concatenate(samples))
    return _STATS_CACHE[key]


def normalise(volume: np.ndarray, stats: IntensityStats, clip: bool = True) -> np.ndarray:
    """``(clip(volume, low, high) - median) / scale`` as float32, any shape."""
    volume = np.asarray(volume, dtype=np.float32)
    if clip:
        volume = np.clip(volume, stats.low, stats.high)
    return ((volume - np.float32(stats.median)) / np.float32(stats.scale)).astype(np.float32, copy=False)


def normalise_tomogram(tomogram: Tomogram, clip: bool = True) -> np.ndarray:
    """The whole level, normalised with its cached statistics: (Z, Y, X) float32."""
    return normalise(tomogram.read(), tomogram_intensity_stats(tomogram), clip)


def normalise_tomogram_on(tomogram: Tomogram, device: torch.device | str, clip: bool = True) -> torch.Tensor:
    """The whole level moved to ``device`` once and normalised there: a (Z, Y, X) float32 tensor.

    The same float32 operations as ``normalise_tomogram`` (equal to it within 1e-5). On a GPU the
    sliding windows are then cut, and their maps stitched, without further host-device copies.
    """
    stats = tomogram_intensity_stats(tomogram)
    read = torch.from_numpy(tomogram.read())
    volume = read.to(device)
    if volume.data_ptr() == read.data_ptr():  # on the CPU: work on a copy, never on the array read
        volume = volume.clone()
    if clip:
        volume.clamp_(stats.low, stats.high)
    return volume.sub_(stats.median).div_(stats.scale)


def read_region(
    source: np.ndarray | Tomogram,
    origin_zyx: Sequence[int],
    size_zyx: Sequence[int],
    stats: IntensityStats | None = None,
    clip: bool = True,
) -> np.ndarray:
    """Read a (Z, Y, X) float32 region that may stick out of the volume; outside voxels are 0.

    A ``Tomogram`` is normalised with ``stats`` (default: its cached statistics), so outside voxels sit
    at the median; an array is read as it is (callers normalise it beforehand).
    """
    origin, size = np.asarray(origin_zyx, dtype=np.int64), np.asarray(size_zyx, dtype=np.int64)
    shape = np.asarray(source.shape_zyx if isinstance(source, Tomogram) else source.shape)
    if np.any(size <= 0) or origin.shape != (3,) or size.shape != (3,):
        raise ValueError(
            f"size_zyx must be three positive ints and origin_zyx three ints, got {size_zyx}, {origin_zyx}"
        )
    start, stop = np.clip(origin, 0, shape), np.clip(origin + size, 0, shape)
    region = np.zeros(tuple(size), dtype=np.float32)
    if np.any(stop <= start):
        return region
    read = tuple(slice(a, b) for a, b in zip(start, stop))
    if isinstance(source, Tomogram):
        data = normalise(source.read(read), stats or tomogram_intensity_stats(source), clip)
    else:
        data = np.asarray(source[read], dtype=np.float32)
    region[tuple(slice(a, b) for a, b in zip(start - origin, stop - origin))] = data
    return region
