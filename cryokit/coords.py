"""Angstrom <-> voxel conversion: the only place cryokit changes units or axis order.

Conventions (read these once, then trust the names):

* Picks and submissions are in **Angstrom, x-y-z order**: ``centres_angstrom_xyz`` has shape (N, 3)
  with columns x, y, z.
* Arrays are indexed **z, y, x**: ``centres_voxel_zyx`` has shape (N, 3) with columns z, y, x, in
  (fractional) voxel units of the level being read.
* The voxel spacing comes from the tomogram's OME-Zarr metadata as ``voxel_spacing_angstrom_zyx``
  (three numbers, z, y, x; on the real data x differs from y and z in the 7th digit).
* **Voxel centres sit at ``index * spacing``** (``VOXEL_CENTRE_OFFSET = 0``): the pick at x = 0 A is
  the centre of voxel 0. This is the convention copick and most public solutions use
  (``location / spacing``). The competition forum debated a half-voxel shift
  (COMPETITION.md 2.1); if calibration on real picks prefers ``(index + 0.5) * spacing``, change
  ``VOXEL_CENTRE_OFFSET`` here and nowhere else.
* **Cells of a stride-``s`` grid** (a network's output, the detector's grid): cell ``j`` covers voxels
  ``[j*s, (j+1)*s)`` and its centre is voxel ``j*s + (s-1)/2``; a voxel point ``p`` lies in cell
  ``floor((p + 0.5) / s)``.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

__all__ = [
    "outside_extent",
    "VOXEL_CENTRE_OFFSET",
    "as_spacing_zyx",
    "angstrom_xyz_to_voxel_zyx",
    "voxel_zyx_to_angstrom_xyz",
    "radius_angstrom_to_voxels",
    "length_angstrom_to_voxels_zyx",
    "voxels_to_angstrom",
    "cell_centres_voxel",
    "voxel_to_cell",
    "cell_of_voxel",
]

VOXEL_CENTRE_OFFSET: float = 0.0

SpacingLike = Union[float, Sequence[float], np.ndarray]


def as_spacing_zyx(voxel_spacing_angstrom: SpacingLike) -> np.ndarray:
    """A (3,) float64 array of spacings in z, y, x order from a scalar or a 3-sequence (z, y, x)."""
    spacing = np.asarray(voxel_spacing_angstrom, dtype=np.float64)
    if spacing.ndim == 0:
        spacing = np.repeat(spacing, 3)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(
            f"voxel spacing must be a positive number or three positive numbers (z, y, x), "
            f"got {voxel_spacing_angstrom!r}"
        )
    return spacing


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == 3:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {array.shape}")
    return array


def angstrom_xyz_to_voxel_zyx(centres_angstrom_xyz: np.ndarray, voxel_spacing_angstrom_zyx: SpacingLike) -> np.ndarray:
    """(N, 3) Angstrom x, y, z -> (N, 3) fractional voxel z, y, x at the given spacing."""
    points_xyz = _as_points(centres_angstrom_xyz, "centres_angstrom_xyz")
    spacing_zyx = as_spacing_zyx(voxel_spacing_angstrom_zyx)
    return points_xyz[:, ::-1] / spacing_zyx - VOXEL_CENTRE_OFFSET


def voxel_zyx_to_angstrom_xyz(centres_voxel_zyx: np.ndarray, voxel_spacing_angstrom_zyx: SpacingLike) -> np.ndarray:
    """(N, 3) fractional voxel z, y, x -> (N, 3) Angstrom x, y, z. Inverse of the above."""
    points_zyx = _as_points(centres_voxel_zyx, "centres_voxel_zyx")
    spacing_zyx = as_spacing_zyx(voxel_spacing_angstrom_zyx)
    return ((points_zyx + VOXEL_CENTRE_OFFSET) * spacing_zyx)[:, ::-1].copy()


def radius_angstrom_to_voxels(radius_angstrom: float, voxel_spacing_angstrom_zyx: SpacingLike) -> float:
    """A radius in Angstrom as a (fractional) number of voxels, using the mean spacing."""
    return float(radius_angstrom / as_spacing_zyx(voxel_spacing_angstrom_zyx).mean())


def length_angstrom_to_voxels_zyx(length_angstrom: float, voxel_spacing_angstrom_zyx: SpacingLike) -> np.ndarray:
    """(3,) a length in Angstrom as (fractional) voxels along z, y and x (each axis's own spacing)."""
    return float(length_angstrom) / as_spacing_zyx(voxel_spacing_angstrom_zyx)


def voxels_to_angstrom(n_voxels: float, voxel_spacing_angstrom_zyx: SpacingLike) -> float:
    """A length of ``n_voxels`` voxels in Angstrom, using the mean spacing (inverse of
    ``radius_angstrom_to_voxels``)."""
    return float(n_voxels * as_spacing_zyx(voxel_spacing_angstrom_zyx).mean())


def cell_centres_voxel(cells_zyx: np.ndarray, stride: int) -> np.ndarray:
    """Voxel coordinates (z, y, x) of (fractional) cells of a stride-``stride`` grid: ``j*s + (s-1)/2``."""
    return np.asarray(cells_zyx, dtype=np.float64) * stride + (stride - 1) / 2


def voxel_to_cell(centres_voxel_zyx: np.ndarray, stride: int) -> np.ndarray:
    """Fractional cell coordinates of voxel points on a stride-``stride`` grid (inverse of the above)."""
    return (np.asarray(centres_voxel_zyx, dtype=np.float64) - (stride - 1) / 2) / stride


def cell_of_voxel(centres_voxel_zyx: np.ndarray, stride: int) -> np.ndarray:
    """Integer cell (z, y, x) holding each voxel point: ``floor((p + 0.5) / s)``."""
    return np.floor((np.asarray(centres_voxel_zyx, dtype=np.float64) + 0.5) / stride).astype(np.int64)


def outside_extent(centres_angstrom_xyz: np.ndarray, extent_angstrom_xyz: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the points with a negative coordinate or, given the tomogram's extent (x, y, z, Angstrom),
    one beyond it."""
    points = _as_points(centres_angstrom_xyz, "centres_angstrom_xyz") if len(centres_angstrom_xyz) else np.zeros((0, 3))
    bad = (points < 0).any(axis=1)
    if extent_angstrom_xyz is not None:
        bad |= (points > np.asarray(extent_angstrom_xyz, dtype=np.float64)).any(axis=1)
    return bad
