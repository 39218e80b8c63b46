"""Where training patches come from: class-balanced particle choice, patch origins, picks in a patch.

Conventions: voxels of the level being read, axes z, y, x. A patch is given by its ``origin_zyx``
(integer tomogram voxel at patch voxel 0) and ``size_zyx``; a tomogram point ``p`` is at
``p - origin_zyx`` in patch coordinates. Voxel ``i`` is centred at ``i`` (``cryokit.coords``), so a
patch covers fractional coordinates ``[-0.5, size - 0.5)``. Class index ``k`` is ``PARTICLES[k]``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

__all__ = [
    "class_sampling_weights",
    "choose_particle",
    "clamp_origin",
    "random_patch_origin",
    "particle_patch_origin",
    "picks_in_patch",
]


def class_sampling_weights(
    class_oversampling: Mapping[str, float], catalog: ParticleCatalog = COMPETITION_CATALOG
) -> np.ndarray:
    """(C,) weight per class index for particle-centred patches; classes not named weigh 1.

    Competition names a project's catalog lacks are ignored (the default oversampling names two of them);
    any other unknown name is an error.
    """
    unknown = set(class_oversampling) - set(catalog.names) - set(COMPETITION_CATALOG.names)
    if unknown:
        raise ValueError(
            f"class_oversampling names unknown particle type(s) {sorted(unknown)}; the catalog ({catalog.source}) "
            f"holds {', '.join(catalog.names)}"
        )
    weights = np.array([float(class_oversampling.get(p.name, 1.0)) for p in catalog])
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
