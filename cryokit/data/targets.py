"""Dense training targets from particle centres: ball label maps and Gaussian heatmaps.

Conventions:

* Centres are fractional voxel coordinates ``centres_voxel_zyx`` (N, 3) of the patch (or of the cell grid
  of a stride-2 network: ``cryokit.coords.voxel_to_cell``); voxel ``i`` is centred at ``i``, so the voxel
  holding a point is ``floor(p + 0.5)``, the nearest centre (``cryokit.coords``).
* Class index ``k`` is ``PARTICLES[k]`` (0..5). Label maps hold ``k + 1`` (== ``PARTICLES[k].label``)
  and 0 for background; heatmap channel ``k`` is class ``k``.
* **Ball tie rule: the nearer centre wins.** A voxel inside several balls takes the class of the
  particle whose centre is closest (Euclidean, in voxels); an exact tie goes to the particle listed first.

The detector's targets (cells, anchors, offsets) live beside the detector: ``cryokit.models.detection_coder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from cryokit.coords import radius_angstrom_to_voxels, voxel_to_cell
from cryokit.particles import COMPETITION_CATALOG, PARTICLES, ParticleCatalog

__all__ = [
    "N_CLASSES",
    "class_radii_voxels",
    "check_points",
    "ball_label_map",
    "gaussian_heatmaps",
    "TargetRenderer",
    "BallTargets",
    "GaussianTargets",
]

N_CLASSES: int = len(PARTICLES)


def class_radii_voxels(
    voxel_spacing_angstrom_zyx, fraction: float = 1.0, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> np.ndarray:
    """(C,) catalog radius of each class index, times ``fraction``, in voxels at this spacing."""
    return np.array(
        [fraction * radius_angstrom_to_voxels(p.radius_angstrom, voxel_spacing_angstrom_zyx) for p in catalog]
    )


def check_points(shape_zyx, centres, class_indices, sizes, size_name: str, n_classes: int = N_CLASSES):
    shape = tuple(int(n) for n in shape_zyx)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"shape_zyx must be three positive ints, got {shape_zyx}")
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    classes = np.asarray(class_indices, dtype=np.int64).reshape(-1)
    if len(classes) != len(centres):
        raise ValueError(f"class_indices has {len(classes)} entries for {len(centres)} centres")
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        raise ValueError(f"class_indices must lie in 0..{n_classes - 1}, got {np.unique(classes)}")
    sizes = np.broadcast_to(np.asarray(sizes, dtype=np.float64), (len(centres),))
    if np.any(sizes <= 0):
        raise ValueError(f"{size_name} must be positive, got {sizes}")
    return shape, centres, classes, sizes


def _box(centre: np.ndarray, half_width: float, shape: tuple[int, ...]):
    """Slices of the voxels within ``half_width`` of ``centre`` (clipped), and their coordinates."""
    low = np.maximum(np.ceil(centre - half_width), 0).astype(int)
    high = np.minimum(np.floor(centre + half_width), np.asarray(shape) - 1).astype(int) + 1
    if np.any(high <= low):
        return None, None
    axes = [np.arange(a, b, dtype=np.float64) - c for a, b, c in zip(low, high, centre)]
    d2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    return tuple(slice(a, b) for a, b in zip(low, high)), d2


def ball_label_map(
    shape_zyx: Sequence[int],
    centres_voxel_zyx: np.ndarray,
    class_indices: np.ndarray,
    radii_voxels: float | np.ndarray,
    n_classes: int = N_CLASSES,
) -> np.ndarray:
    """A label map with a ball of label ``class + 1`` around each centre; nearer centre wins ties.

    Args:
        shape_zyx: (3,) output shape.
        centres_voxel_zyx: (N, 3) fractional voxel centres; may lie outside the volume (partial balls).
        class_indices: (N,) class index 0..5 per particle.
        radii_voxels: scalar or (N,) ball radius per particle (voxels with distance <= r are inside).
        n_classes: number of classes of the catalog (labels 1..n_classes).

    Returns:
        (Z, Y, X) int64 labels, 0 for background.
    """
    shape, centres, classes, radii = check_points(
        shape_zyx, centres_voxel_zyx, class_indices, radii_voxels, "radii_voxels", n_classes
    )
    labels = np.zeros(shape, dtype=np.int64)
    nearest_d2 = np.full(shape, np.inf, dtype=np.float64)
    for centre, label, radius in zip(centres, classes + 1, radii):
        box, d2 = _box(centre, radius, shape)
        if box is None:
            continue
        claim = (d2 <= radius**2) & (d2 < nearest_d2[box])
        labels[box][claim] = label
        nearest_d2[box][claim] = d2[claim]
    return labels


def gaussian_heatmaps(
    shape_zyx: Sequence[int],
    centres_voxel_zyx: np.ndarray,
    class_indices: np.ndarray,
    sigmas_voxels: float | np.ndarray,
    n_classes: int = N_CLASSES,
    truncate: float = 3.0,
) -> np.ndarray:
    """One heatmap per class: the maximum over its particles of ``exp(-d^2 / (2 sigma^2))``.

    Args:
        shape_zyx: (3,) output shape.
        centres_voxel_zyx: (N, 3) fractional voxel centres (the peak of 1 sits at the exact centre).
        class_indices: (N,) class index per particle, < ``n_classes``.
        sigmas_voxels: scalar or (N,) Gaussian sigma per particle.
        n_classes: number of channels.
        truncate: each Gaussian is rendered within ``truncate * sigma`` of its centre (0 beyond).

    Returns:
        (C, Z, Y, X) float32 heatmaps in [0, 1].
    """
    shape, centres, classes, sigmas = check_points(
        shape_zyx, centres_voxel_zyx, class_indices, sigmas_voxels, "sigmas_voxels", n_classes
    )
    if classes.size and classes.max() >= n_classes:
        raise ValueError(f"class_indices must be < n_classes={n_classes}, got {classes.max()}")
    heatmaps = np.zeros((n_classes, *shape), dtype=np.float32)
    for centre, channel, sigma in zip(centres, classes, sigmas):
        box, d2 = _box(centre, truncate * sigma, shape)
        if box is None:
            continue
        view = heatmaps[channel][box]
        np.maximum(view, np.exp(-d2 / (2 * sigma**2)).astype(np.float32), out=view)
    return heatmaps


class TargetRenderer(Protocol):
    """What ``cryokit.data.dataset.PatchDataset`` calls to render a patch's target from its picks.

    ``stride`` is the network's output stride (patch sizes must be multiples of it); the call takes the
    patch size (z, y, x), the picks' (N, 3) fractional voxel centres in the patch, their (N,) class
    indices and the voxel spacing (Angstrom, z, y, x), and returns a tensor or a dict of tensors.
    """

    stride: int

    def __call__(
        self,
        size_zyx: Sequence[int],
        centres_voxel_zyx: np.ndarray,
        class_indices: np.ndarray,
        voxel_spacing_angstrom_zyx,
    ) -> Any: ...


@dataclass(frozen=True)
class BallTargets:
    """(Z/s, Y/s, X/s) int64 ball label maps; ball radius ``radius_fraction`` x the class radius."""

    radius_fraction: float = 0.5
    stride: int = 1
    catalog: ParticleCatalog = COMPETITION_CATALOG  # class k is catalog.particles[k]
    render = staticmethod(ball_label_map)

    def __call__(self, size_zyx, centres_voxel_zyx, class_indices, voxel_spacing_angstrom_zyx) -> torch.Tensor:
        # A U-Net of output stride s predicts on the stride-s cell grid: the target is rendered there.
        radii = class_radii_voxels(voxel_spacing_angstrom_zyx, self.radius_fraction, self.catalog)
        radii = radii[np.asarray(class_indices, int)]
        cell_shape = tuple(int(n) // self.stride for n in size_zyx)
        cells = voxel_to_cell(centres_voxel_zyx, self.stride)
        return torch.from_numpy(
            self.render(cell_shape, cells, class_indices, radii / self.stride, n_classes=len(self.catalog))
        )


@dataclass(frozen=True)
class GaussianTargets(BallTargets):
    """(6, Z/s, Y/s, X/s) float32 heatmaps; sigma ``radius_fraction`` x the class radius."""

    render = staticmethod(gaussian_heatmaps)
