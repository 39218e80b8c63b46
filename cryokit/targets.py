"""Training targets from particle centres: ball label maps, Gaussian heatmaps, detection grids.

Conventions (see also ``cryokit.patching``):

* Centres are fractional voxel coordinates ``centres_voxel_zyx`` (N, 3) of the patch; voxel ``i`` is
  centred at ``i``, so the voxel holding a point is ``floor(p + 0.5)``, the nearest centre (``cryokit.coords``).
* Class index ``k`` is ``PARTICLES[k]`` (0..5). Label maps hold ``k + 1`` (== ``PARTICLES[k].label``)
  and 0 for background; heatmap channel ``k`` is class ``k``.
* **Ball tie rule: the nearer centre wins.** A voxel inside several balls takes the class of the
  particle whose centre is closest (Euclidean, in voxels); an exact tie goes to the particle listed first.
* Detection grid of stride ``s``: cell ``c`` covers voxels ``[c*s, (c+1)*s)``, i.e. fractional
  coordinates ``[c*s - 0.5, (c+1)*s - 0.5)``; its centre is ``c*s + (s-1)/2`` and a point ``p`` lies in
  cell ``floor((p + 0.5) / s)``. Offsets are ``(p - cell centre) / s`` in cell units, in ``[-0.5, 0.5)``.
  A stride-``s`` network output and ``cryokit.patching.predict_tomogram`` use the same cells.
* Detection anchors: one per size group of the catalog, ``ANCHOR_GROUPS`` = small (apo-ferritin 60 A,
  beta-amylase 65 A), medium (beta-galactosidase 90 A), large (thyroglobulin 130 A, virus-like particle
  135 A, ribosome 150 A). An anchor's radius is the geometric mean of its group's radii, which keeps
  every ``log(r / anchor_r)`` within +-0.08. A particle goes to its class's anchor (no IoU matching).
* **Collision rule:** when two particles fall in the same cell and anchor, the one nearer the cell centre
  is encoded and the others are dropped and counted in ``DetectionTargets.n_collisions``. Real particles
  never collide at stride 4 on level 0 (cells are 40 A wide, centres >= 120 A apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cryokit.coords import radius_angstrom_to_voxels, voxel_zyx_to_angstrom_xyz
from cryokit.particles import PARTICLES, particle

__all__ = [
    "N_CLASSES",
    "class_radii_voxels",
    "ball_label_map",
    "gaussian_heatmaps",
    "ANCHOR_GROUPS",
    "anchor_radii_angstrom",
    "anchor_radii_voxels",
    "class_anchor_indices",
    "detection_grid_shape",
    "DetectionTargets",
    "encode_detection_targets",
    "split_detection_maps",
    "Detections",
    "decode_detections",
    "detections_to_angstrom_xyz",
]

N_CLASSES: int = len(PARTICLES)


def class_radii_voxels(voxel_spacing_angstrom_zyx, fraction: float = 1.0) -> np.ndarray:
    """(6,) catalog radius of each class index, times ``fraction``, in voxels at this spacing."""
    return np.array(
        [fraction * radius_angstrom_to_voxels(p.radius_angstrom, voxel_spacing_angstrom_zyx) for p in PARTICLES]
    )


def _check_points(shape_zyx, centres, class_indices, sizes, size_name: str):
    shape = tuple(int(n) for n in shape_zyx)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"shape_zyx must be three positive ints, got {shape_zyx}")
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    classes = np.asarray(class_indices, dtype=np.int64).reshape(-1)
    if len(classes) != len(centres):
        raise ValueError(f"class_indices has {len(classes)} entries for {len(centres)} centres")
    if classes.size and (classes.min() < 0 or classes.max() >= N_CLASSES):
        raise ValueError(f"class_indices must lie in 0..{N_CLASSES - 1}, got {np.unique(classes)}")
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
) -> np.ndarray:
    """A label map with a ball of label ``class + 1`` around each centre; nearer centre wins ties.

    Args:
        shape_zyx: (3,) output shape.
        centres_voxel_zyx: (N, 3) fractional voxel centres; may lie outside the volume (partial balls).
        class_indices: (N,) class index 0..5 per particle.
        radii_voxels: scalar or (N,) ball radius per particle (voxels with distance <= r are inside).

    Returns:
        (Z, Y, X) int64 labels, 0 for background.
    """
    shape, centres, classes, radii = _check_points(
        shape_zyx, centres_voxel_zyx, class_indices, radii_voxels, "radii_voxels"
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
    shape, centres, classes, sigmas = _check_points(
        shape_zyx, centres_voxel_zyx, class_indices, sigmas_voxels, "sigmas_voxels"
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


ANCHOR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("apo-ferritin", "beta-amylase"),
    ("beta-galactosidase",),
    ("thyroglobulin", "virus-like-particle", "ribosome"),
)


def anchor_radii_angstrom() -> np.ndarray:
    """(A,) anchor radii: the geometric mean radius of each of ``ANCHOR_GROUPS``."""
    return np.array([np.exp(np.mean([np.log(particle(n).radius_angstrom) for n in g])) for g in ANCHOR_GROUPS])


def anchor_radii_voxels(voxel_spacing_angstrom_zyx) -> np.ndarray:
    """(A,) anchor radii in voxels at this spacing."""
    return np.array([radius_angstrom_to_voxels(r, voxel_spacing_angstrom_zyx) for r in anchor_radii_angstrom()])


def class_anchor_indices() -> np.ndarray:
    """(6,) int64 anchor index of each class index."""
    group_of = {name: a for a, group in enumerate(ANCHOR_GROUPS) for name in group}
    return np.array([group_of[p.name] for p in PARTICLES], dtype=np.int64)


def detection_grid_shape(shape_zyx: Sequence[int], stride: int) -> tuple[int, int, int]:
    """Cells per axis of a stride-``stride`` grid over a (Z, Y, X) patch: ``ceil(n / stride)``."""
    if int(stride) < 1:
        raise ValueError(f"stride must be a positive int, got {stride}")
    return tuple(-(-int(n) // int(stride)) for n in shape_zyx)  # type: ignore[return-value]


@dataclass(frozen=True)
class DetectionTargets:
    """Per cell and anchor targets of a grid of shape (G_z, G_y, G_x).

    Attributes:
        objectness: (A, Gz, Gy, Gx) float32, 1 where a particle is encoded, else 0.
        class_index: (A, Gz, Gy, Gx) int64 class index, -1 where empty.
        offset_zyx: (A, 3, Gz, Gy, Gx) float32 ``(centre - cell centre) / stride``, in [-0.5, 0.5).
        log_radius_ratio: (A, Gz, Gy, Gx) float32 ``log(radius / anchor radius)``, 0 where empty.
        n_collisions: particles dropped because a nearer one took their cell and anchor.
    """

    objectness: np.ndarray
    class_index: np.ndarray
    offset_zyx: np.ndarray
    log_radius_ratio: np.ndarray
    n_collisions: int

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """The four grids as torch tensors (for a dataset item)."""
        return {
            k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
            for k in ("objectness", "class_index", "offset_zyx", "log_radius_ratio")
        }


def encode_detection_targets(
    shape_zyx: Sequence[int],
    centres_voxel_zyx: np.ndarray,
    class_indices: np.ndarray,
    radii_voxels: float | np.ndarray,
    anchors_voxels: np.ndarray,
    stride: int = 4,
    class_anchor: np.ndarray | None = None,
) -> DetectionTargets:
    """Detection targets of a patch; centres outside the grid are left out (nearer centre wins a cell).

    Args:
        shape_zyx: (3,) patch shape; the grid is ``detection_grid_shape(shape_zyx, stride)``.
        centres_voxel_zyx: (N, 3) fractional voxel centres in the patch.
        class_indices: (N,) class index per particle.
        radii_voxels: scalar or (N,) particle radius in voxels (the catalog radius of its class).
        anchors_voxels: (A,) anchor radii in voxels (``anchor_radii_angstrom()`` converted).
        stride: grid stride in voxels.
        class_anchor: (6,) anchor index per class (default ``class_anchor_indices()``).
    """
    _, centres, classes, radii = _check_points(
        shape_zyx, centres_voxel_zyx, class_indices, radii_voxels, "radii_voxels"
    )
    anchors = np.asarray(anchors_voxels, dtype=np.float64).reshape(-1)
    class_anchor = class_anchor_indices() if class_anchor is None else np.asarray(class_anchor)
    grid = detection_grid_shape(shape_zyx, stride)
    cells = np.floor((centres + 0.5) / stride).astype(np.int64)
    inside = np.all((cells >= 0) & (cells < np.asarray(grid)), axis=1)
    centres, classes, radii, cells = centres[inside], classes[inside], radii[inside], cells[inside]
    anchor = class_anchor[classes]
    offsets = (centres - (cells * stride + (stride - 1) / 2)) / stride
    keys = np.ravel_multi_index((anchor, *cells.T), (len(anchors), *grid))
    order = np.lexsort((np.linalg.norm(offsets, axis=1), keys))
    first = np.r_[True, keys[order][1:] != keys[order][:-1]] if len(order) else np.zeros(0, bool)
    win = order[first]
    targets = DetectionTargets(
        objectness=np.zeros((len(anchors), *grid), np.float32),
        class_index=np.full((len(anchors), *grid), -1, np.int64),
        offset_zyx=np.zeros((len(anchors), 3, *grid), np.float32),
        log_radius_ratio=np.zeros((len(anchors), *grid), np.float32),
        n_collisions=int(len(order) - len(win)),
    )
    index = (anchor[win], *cells[win].T)
    targets.objectness[index] = 1.0
    targets.class_index[index] = classes[win]
    targets.offset_zyx[anchor[win], :, cells[win, 0], cells[win, 1], cells[win, 2]] = offsets[win]
    targets.log_radius_ratio[index] = np.log(radii[win] / anchors[anchor[win]])
    return targets


def split_detection_maps(maps: torch.Tensor, n_anchors: int, n_classes: int = N_CLASSES) -> dict[str, torch.Tensor]:
    """Split a detector output (B, A * (5 + C), Gz, Gy, Gx) into named maps; per anchor the channels are
    [objectness, C class scores, 3 offsets (z, y, x), log radius ratio].

    Returns ``objectness`` (B, A, G...), ``class_scores`` (B, A, C, G...), ``offset_zyx`` (B, A, 3, G...),
    ``log_radius_ratio`` (B, A, G...).
    """
    per_anchor = 5 + n_classes
    if maps.ndim != 5 or maps.shape[1] != n_anchors * per_anchor:
        raise ValueError(f"maps must be (B, {n_anchors * per_anchor}, Gz, Gy, Gx), got {tuple(maps.shape)}")
    maps = maps.reshape(maps.shape[0], n_anchors, per_anchor, *maps.shape[2:])
    return {
        "objectness": maps[:, :, 0],
        "class_scores": maps[:, :, 1 : 1 + n_classes],
        "offset_zyx": maps[:, :, 1 + n_classes : 4 + n_classes],
        "log_radius_ratio": maps[:, :, -1],
    }


@dataclass(frozen=True)
class Detections:
    """Decoded candidates: ``centres_voxel_zyx`` (K, 3), ``class_indices`` (K,), ``scores`` (K,),
    ``radii_voxels`` (K,), all numpy, in the voxel frame of the decoded grid's input."""

    centres_voxel_zyx: np.ndarray
    class_indices: np.ndarray
    scores: np.ndarray
    radii_voxels: np.ndarray


def decode_detections(
    objectness,
    class_scores,
    offset_zyx,
    log_radius_ratio,
    stride: int,
    anchors_voxels: np.ndarray,
    threshold: float = 0.5,
    from_logits: bool = False,
) -> Detections:
    """Candidates from one grid of maps (no batch axis); inverse of ``encode_detection_targets``.

    Args:
        objectness: (A, Gz, Gy, Gx) probabilities (or logits with ``from_logits``).
        class_scores: (A, C, Gz, Gy, Gx) class probabilities (or logits: softmax over C).
        offset_zyx: (A, 3, Gz, Gy, Gx) offsets from the cell centre in cell units.
        log_radius_ratio: (A, Gz, Gy, Gx) ``log(radius / anchor radius)``.
        stride: grid stride in voxels; anchors_voxels: (A,) anchor radii in voxels.
        threshold: keep cells whose score ``objectness * max class probability`` is >= this.
    """
    obj, cls, off, logr = (
        torch.as_tensor(t).detach().float().cpu() for t in (objectness, class_scores, offset_zyx, log_radius_ratio)
    )
    if from_logits:
        obj, cls = obj.sigmoid(), cls.softmax(dim=1)
    best_prob, best_class = cls.max(dim=1)
    score = obj * best_prob
    a, z, y, x = torch.nonzero(score >= threshold, as_tuple=True)
    cells = torch.stack((z, y, x), dim=1).double()
    centres = cells * stride + (stride - 1) / 2 + off[a, :, z, y, x].double() * stride
    anchors = torch.as_tensor(np.asarray(anchors_voxels, dtype=np.float64))
    radii = anchors[a] * torch.exp(logr[a, z, y, x].double())
    return Detections(
        centres.numpy(), best_class[a, z, y, x].numpy().astype(np.int64), score[a, z, y, x].numpy(), radii.numpy()
    )


def detections_to_angstrom_xyz(
    centres_voxel_zyx: np.ndarray, voxel_spacing_angstrom_zyx, origin_zyx: Sequence[int] = (0, 0, 0)
) -> np.ndarray:
    """(K, 3) Angstrom x, y, z of patch voxel centres whose patch starts at tomogram voxel ``origin_zyx``."""
    tomogram_zyx = np.asarray(centres_voxel_zyx, dtype=np.float64).reshape(-1, 3) + np.asarray(origin_zyx)
    return voxel_zyx_to_angstrom_xyz(tomogram_zyx, voxel_spacing_angstrom_zyx)
