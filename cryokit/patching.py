"""Patches: per-tomogram intensity normalisation, training patch sampling, whole-tomogram inference.

Conventions:

* Everything here is in voxels of the level being read, axes z, y, x. A patch is given by its
  ``origin_zyx`` (integer voxel of the tomogram at patch voxel 0) and ``size_zyx``; a tomogram point
  ``p`` is at ``p - origin_zyx`` in patch coordinates. Voxel ``i`` is centred at ``i``
  (``cryokit.coords``), so a patch covers fractional coordinates ``[-0.5, size - 0.5)``.
* Class index ``k`` is ``PARTICLES[k]`` (0..5); label maps store ``k + 1`` (0 is background).
* A network of output stride ``s`` puts in its output cell ``j`` what it saw in input voxels
  ``[j*s, (j+1)*s)``; the cell's centre is voxel ``j*s + (s-1)/2`` (``cell_centres_voxel``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from cryokit.io.tomogram import Tomogram
from cryokit.particles import PARTICLES

__all__ = [
    "IntensityStats",
    "intensity_stats",
    "tomogram_intensity_stats",
    "normalise",
    "normalise_tomogram",
    "normalise_tomogram_on",
    "read_region",
    "class_sampling_weights",
    "choose_particle",
    "clamp_origin",
    "random_patch_origin",
    "particle_patch_origin",
    "picks_in_patch",
    "predict_tomogram",
    "cell_centres_voxel",
    "voxel_to_cell",
]

VolumeLike = Union[np.ndarray, torch.Tensor, Tomogram]
ModelOutput = Union[torch.Tensor, Mapping[str, torch.Tensor]]


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


def class_sampling_weights(class_oversampling: Mapping[str, float]) -> np.ndarray:
    """(6,) weight per class index for particle-centred patches; classes not named weigh 1."""
    unknown = set(class_oversampling) - {p.name for p in PARTICLES}
    if unknown:
        raise ValueError(f"class_oversampling names unknown particle type(s) {sorted(unknown)}")
    weights = np.array([float(class_oversampling.get(p.name, 1.0)) for p in PARTICLES])
    if np.any(weights < 0) or not np.isfinite(weights).all():
        raise ValueError(f"class_oversampling weights must be finite and >= 0, got {dict(class_oversampling)}")
    return weights


def choose_particle(rng: np.random.Generator, class_indices: np.ndarray, class_weights: np.ndarray) -> int | None:
    """Index of a particle: a class present with probability proportional to its weight, then one of
    its particles uniformly (so a rare class is picked as often as a common one of equal weight).

    Returns None when no present class has a positive weight.
    """
    class_indices = np.asarray(class_indices, dtype=np.int64)
    present = np.unique(class_indices)
    weights = np.asarray(class_weights, dtype=np.float64)[present] if present.size else np.zeros(0)
    if weights.sum() <= 0:
        return None
    chosen_class = rng.choice(present, p=weights / weights.sum())
    return int(rng.choice(np.flatnonzero(class_indices == chosen_class)))


def clamp_origin(origin_zyx: np.ndarray, shape_zyx: Sequence[int], size_zyx: Sequence[int]) -> np.ndarray:
    """Keep a patch inside the volume; where the volume is smaller than the patch, centre it (pad)."""
    origin, shape, size = (np.asarray(a, dtype=np.int64) for a in (origin_zyx, shape_zyx, size_zyx))
    inside = np.clip(origin, 0, np.maximum(shape - size, 0))
    return np.where(shape >= size, inside, -((size - shape) // 2))


def random_patch_origin(rng: np.random.Generator, shape_zyx: Sequence[int], size_zyx: Sequence[int]) -> np.ndarray:
    """(3,) int64 origin of a patch placed uniformly inside the volume."""
    high = np.maximum(np.asarray(shape_zyx) - np.asarray(size_zyx), 0)
    return clamp_origin(rng.integers(0, high + 1), shape_zyx, size_zyx)


def particle_patch_origin(
    rng: np.random.Generator,
    shape_zyx: Sequence[int],
    size_zyx: Sequence[int],
    centre_voxel_zyx: np.ndarray,
    jitter_fraction: float = 0.35,
) -> np.ndarray:
    """(3,) int64 origin of a patch centred on a particle, shifted by up to ``jitter_fraction * size``
    per axis (uniform), then clamped inside the volume. With jitter < 0.5 the particle stays inside."""
    if not 0 <= jitter_fraction <= 0.5:
        raise ValueError(f"jitter_fraction must lie in [0, 0.5], got {jitter_fraction}")
    size = np.asarray(size_zyx, dtype=np.float64)
    shift = rng.uniform(-jitter_fraction, jitter_fraction, size=3) * size
    origin = np.floor(np.asarray(centre_voxel_zyx) + shift - (size - 1) / 2 + 0.5).astype(np.int64)
    return clamp_origin(origin, shape_zyx, size_zyx)


def picks_in_patch(
    centres_voxel_zyx: np.ndarray,
    class_indices: np.ndarray,
    origin_zyx: Sequence[int],
    size_zyx: Sequence[int],
    margins_voxels: float | np.ndarray = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Picks of a patch in patch coordinates, including those up to a margin outside it.

    Args:
        centres_voxel_zyx: (N, 3) tomogram voxel coordinates.
        class_indices: (N,) class index per pick.
        origin_zyx: (3,) patch origin; size_zyx: (3,) patch size.
        margins_voxels: scalar or (N,) distance outside the patch (e.g. each particle's radius) within
            which a pick is kept, so the targets of partly visible particles are right.

    Returns:
        (M, 3) float64 centres in patch voxel coordinates and their (M,) int64 class indices.
    """
    centres = np.asarray(centres_voxel_zyx, dtype=np.float64).reshape(-1, 3)
    classes = np.asarray(class_indices, dtype=np.int64).reshape(-1)
    if len(centres) != len(classes):
        raise ValueError(f"class_indices has {len(classes)} entries for {len(centres)} centres_voxel_zyx")
    local = centres - np.asarray(origin_zyx, dtype=np.float64)
    margin = np.broadcast_to(np.asarray(margins_voxels, dtype=np.float64), (len(local),))[:, None]
    keep = np.all((local >= -0.5 - margin) & (local < np.asarray(size_zyx) - 0.5 + margin), axis=1)
    return local[keep], classes[keep]


def cell_centres_voxel(cell_indices_zyx: np.ndarray, stride: int) -> np.ndarray:
    """Voxel coordinates of the centres of output cells of a stride-``stride`` map: ``j*s + (s-1)/2``."""
    return np.asarray(cell_indices_zyx, dtype=np.float64) * stride + (stride - 1) / 2


def voxel_to_cell(centres_voxel_zyx: np.ndarray, stride: int) -> np.ndarray:
    """Fractional cell coordinates of voxel coordinates on a stride-``stride`` grid (inverse of the above)."""
    return (np.asarray(centres_voxel_zyx, dtype=np.float64) - (stride - 1) / 2) / stride


def _window_overlap(size_zyx: Sequence[int], overlap: float, stride: int) -> list[float]:
    """MONAI overlaps whose scan intervals ``int(size * (1 - overlap))`` are multiples of ``stride``,
    so every window starts on a whole output cell (MONAI scales window starts by 1/stride)."""
    overlaps = []
    for size in size_zyx:
        interval = max(stride, int(size * (1 - overlap)) // stride * stride)
        # +0.5 keeps MONAI's int() from landing one below the interval through rounding error.
        overlaps.append(0.0 if interval >= size else 1 - (interval + 0.5) / size)
    return overlaps


def _checked(model_fn: Callable[[torch.Tensor], ModelOutput], size: list[int], stride: int):
    """``model_fn`` with a check that every output map has the window size divided by the stride."""
    expected = tuple(n // stride for n in size)

    def checked(windows: torch.Tensor) -> ModelOutput:
        output = model_fn(windows)
        for value in output.values() if isinstance(output, Mapping) else [output]:
            if tuple(value.shape[2:]) != expected:
                raise ValueError(
                    f"model_fn returned maps of spatial shape {tuple(value.shape[2:])} for windows "
                    f"{tuple(size)}; output_stride={stride} means {expected}"
                )
        return output

    return checked


def _as_batch(volume: VolumeLike) -> torch.Tensor:
    if isinstance(volume, Tomogram):
        volume = normalise_tomogram(volume)
    tensor = torch.as_tensor(volume, dtype=torch.float32)
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"volume must be (Z, Y, X) or (C, Z, Y, X), got shape {tuple(tensor.shape)}")
    return tensor[None]


@torch.no_grad()
def predict_tomogram(
    model_fn: Callable[[torch.Tensor], ModelOutput],
    volume: VolumeLike,
    patch_size_zyx: Sequence[int] = (64, 128, 128),
    overlap: float = 0.25,
    batch_size: int = 2,
    output_stride: int = 1,
    sigma_scale: float = 0.125,
    padding_mode: str = "replicate",
    sw_device: torch.device | str | None = None,
    device: torch.device | str | None = None,
) -> ModelOutput:
    """Whole-tomogram prediction with MONAI's ``sliding_window_inference`` and Gaussian blending.

    Args:
        model_fn: maps a (B, C_in, z, y, x) window batch to (B, C, z/s, y/s, x/s) maps or a dict of
            such maps (all of output stride ``s``).
        volume: (Z, Y, X) or (C_in, Z, Y, X) array/tensor used as is, or a ``Tomogram`` read whole and
            normalised with the same cached statistics as training patches.
        patch_size_zyx: window size; each entry a multiple of ``output_stride``.
        overlap: share of a window shared with the next (rounded so windows start on whole cells).
        batch_size: windows per call of ``model_fn``.
        output_stride: 1, 2, 4, ... (a power of two). Output cell ``j`` covers voxels ``[j*s, (j+1)*s)``.
        sigma_scale: Gaussian window sigma as a share of the window size.
        padding_mode: how the volume is padded at its high end up to whole cells / one window.
        sw_device: where windows run (the model's device); device: where the maps are stitched.

    Returns:
        (C, ceil(Z/s), ceil(Y/s), ceil(X/s)) float32 maps (or a dict of them) aligned with the voxels.
    """
    stride = int(output_stride)
    if stride < 1 or stride & (stride - 1):
        raise ValueError(f"output_stride must be a power of two, got {output_stride}")
    size = [int(n) for n in patch_size_zyx]
    if len(size) != 3 or any(n <= 0 or n % stride for n in size):
        raise ValueError(
            f"patch_size_zyx must be three positive multiples of output_stride={stride}, got {patch_size_zyx}"
        )
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    from monai.inferers import sliding_window_inference  # here: importing MONAI takes seconds

    batch = _as_batch(volume)
    shape = list(batch.shape[2:])
    padded = [max(w, math.ceil(n / stride) * stride) for n, w in zip(shape, size)]
    pad = [p for n, target in zip(shape[::-1], padded[::-1]) for p in (0, target - n)]
    if any(pad):
        batch = F.pad(batch, pad, mode=padding_mode)
    maps = sliding_window_inference(
        batch,
        size,
        batch_size,
        _checked(model_fn, size, stride),
        overlap=_window_overlap(size, overlap, stride),
        mode="gaussian",
        sigma_scale=sigma_scale,
        sw_device=sw_device,
        device=device,
    )
    crop = (0, slice(None), *(slice(0, math.ceil(n / stride)) for n in shape))
    if isinstance(maps, Mapping):
        return {key: value[crop] for key, value in maps.items()}
    return maps[crop]
