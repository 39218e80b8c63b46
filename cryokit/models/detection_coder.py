"""The detector's coding: its channel layout, targets encoded on its grid, and maps decoded back.

* Grid of stride ``s``: cell ``c`` covers voxels ``[c*s, (c+1)*s)`` (``cryokit.coords`` cells); offsets are
  ``(p - cell centre) / s`` in cell units, in ``[-0.5, 0.5)``. A stride-``s`` network output and
  ``cryokit.inference.sliding_window`` use the same cells.
* Channel layout (``DetectionLayout``): per anchor ``[objectness, C class scores, 3 offsets (z, y, x), log
  radius ratio]``, ``5 + C`` channels; the dense maps the sliding-window inferer blends are the anchors'
  blocks one after the other. This is the only place the layout is written down.
* **Positives:** a particle's own cell, and with ``positive_radius_cells`` r > 0 also every cell whose
  centre lies within r cells of the particle's centre (centre sampling, as FCOS and YOLOX do: a
  particle then trains several cells, each regressing its offset to the same centre; the per-class
  spherical NMS at decoding merges their votes). Offsets then reach r cells, so the network's offset bound
  is ``detector_offset_bound(r)``.
* **Collision rule:** when two particles claim the same cell and anchor, the one nearer the cell centre
  is encoded there; a particle left with no cell is counted in ``DetectionTargets.n_collisions``. Real
  particles never collide at stride 4 on level 0 (cells are 40 A wide, centres >= 120 A apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from cryokit.coords import cell_centres_voxel, cell_of_voxel
from cryokit.data.targets import check_points, class_radii_voxels
from cryokit.models.anchors import anchor_radii_voxels, class_anchor_indices

__all__ = [
    "DETECTOR_OUTPUTS",
    "DETECTION_TARGET_KEYS",
    "DetectionLayout",
    "detection_grid_shape",
    "detector_offset_bound",
    "DetectionTargets",
    "encode_detection_targets",
    "DetectionTargetEncoder",
    "Detections",
    "decode_detections",
]

# Keys of the detector's output dict (and of ``DetectionLayout.split``), and of its targets' dict.
DETECTOR_OUTPUTS = ("objectness", "class_scores", "offset_zyx", "log_radius_ratio")
DETECTION_TARGET_KEYS = ("objectness", "class_index", "offset_zyx", "log_radius_ratio")


@dataclass(frozen=True)
class DetectionLayout:
    """Dense maps of a detector with ``n_anchors`` anchors and ``n_classes`` classes: per anchor
    ``[objectness, class probabilities (C), offsets (z, y, x), log radius ratio]``."""

    n_anchors: int
    n_classes: int

    @property
    def channels_per_anchor(self) -> int:
        return 5 + self.n_classes

    @property
    def n_channels(self) -> int:
        return self.n_anchors * self.channels_per_anchor

    @property
    def vector_channels(self) -> tuple[tuple[int, int, int], ...]:
        """The (z, y, x) offset channels of each anchor: displacements that TTA must turn with the grid."""
        first = 1 + self.n_classes
        return tuple(tuple(a * self.channels_per_anchor + first + i for i in range(3)) for a in range(self.n_anchors))

    def pack(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Network outputs (logits; ``cryokit.models.detector.YOLO3D``) -> (B, A * (5 + C), Gz, Gy, Gx)
        maps of probabilities, offsets and log radius ratios, ready to blend."""
        objectness = outputs["objectness"].float().sigmoid()[:, :, None]
        classes = outputs["class_scores"].float().softmax(dim=2)
        per_anchor = torch.cat(
            [objectness, classes, outputs["offset_zyx"].float(), outputs["log_radius_ratio"].float()[:, :, None]], dim=2
        )
        return per_anchor.flatten(1, 2)

    def split(self, maps: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, A * (5 + C), Gz, Gy, Gx) maps -> ``objectness`` (B, A, G...), ``class_scores`` (B, A, C, G...),
        ``offset_zyx`` (B, A, 3, G...), ``log_radius_ratio`` (B, A, G...)."""
        if maps.ndim != 5 or maps.shape[1] != self.n_channels:
            raise ValueError(f"maps must be (B, {self.n_channels}, Gz, Gy, Gx), got {tuple(maps.shape)}")
        maps = maps.reshape(maps.shape[0], self.n_anchors, self.channels_per_anchor, *maps.shape[2:])
        c = self.n_classes
        return {
            "objectness": maps[:, :, 0],
            "class_scores": maps[:, :, 1 : 1 + c],
            "offset_zyx": maps[:, :, 1 + c : 4 + c],
            "log_radius_ratio": maps[:, :, -1],
        }


def detector_offset_bound(positive_radius_cells: float = 0.0) -> float:
    """The offset bound a detector trained with ``positive_radius_cells`` needs: the largest target offset
    (0.5 cell for a cell's own particle, r for centre sampling) plus half a cell, so targets never sit where
    the ``tanh`` saturates (1.0 for r = 0, the bound the detector always had)."""
    if positive_radius_cells < 0:
        raise ValueError(f"positive_radius_cells must be >= 0, got {positive_radius_cells}")
    return max(0.5, float(positive_radius_cells)) + 0.5


def _positive_cells(
    centres_voxel_zyx: np.ndarray,
    own_cells_zyx: np.ndarray,
    stride: int,
    grid: Sequence[int],
    positive_radius_cells: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(particle index, cell zyx) of every positive: each particle's own cell (``own_cells_zyx``, on the grid)
    and, within ``positive_radius_cells`` of its centre, the cells around it that lie in the grid."""
    reach = int(np.ceil(positive_radius_cells))
    steps = np.arange(-reach, reach + 1)
    steps = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    cells = own_cells_zyx[:, None, :] + steps[None]  # (N, S, 3)
    distance_cells = np.linalg.norm(cell_centres_voxel(cells, stride) - centres_voxel_zyx[:, None], axis=-1) / stride
    positive = (distance_cells <= positive_radius_cells) | np.all(steps == 0, axis=1)[None]
    positive &= np.all((cells >= 0) & (cells < np.asarray(grid)), axis=-1)
    particle, step = np.nonzero(positive)
    return particle, cells[particle, step]


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
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in DETECTION_TARGET_KEYS}


def encode_detection_targets(
    shape_zyx: Sequence[int],
    centres_voxel_zyx: np.ndarray,
    class_indices: np.ndarray,
    radii_voxels: float | np.ndarray,
    anchors_voxels: np.ndarray,
    stride: int = 4,
    class_anchor: np.ndarray | None = None,
    positive_radius_cells: float = 0.0,
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
        positive_radius_cells: centre sampling radius in cells (0: a particle's own cell only).
    """
    _, centres, classes, radii = check_points(shape_zyx, centres_voxel_zyx, class_indices, radii_voxels, "radii_voxels")
    anchors = np.asarray(anchors_voxels, dtype=np.float64).reshape(-1)
    class_anchor = class_anchor_indices() if class_anchor is None else np.asarray(class_anchor)
    grid = detection_grid_shape(shape_zyx, stride)
    if positive_radius_cells < 0:
        raise ValueError(f"positive_radius_cells must be >= 0, got {positive_radius_cells}")
    # A particle whose own cell is off the grid is left out, even when cells around it are on it.
    own = cell_of_voxel(centres, stride)
    inside = np.all((own >= 0) & (own < np.asarray(grid)), axis=1)
    centres, classes, radii = centres[inside], classes[inside], radii[inside]
    particle, cells = _positive_cells(centres, own[inside], stride, grid, positive_radius_cells)
    anchor = class_anchor[classes[particle]]
    offsets = (centres[particle] - cell_centres_voxel(cells, stride)) / stride
    keys = np.ravel_multi_index((anchor, *cells.T), (len(anchors), *grid))
    order = np.lexsort((np.linalg.norm(offsets, axis=1), keys))
    first = np.r_[True, keys[order][1:] != keys[order][:-1]] if len(order) else np.zeros(0, bool)
    win = order[first]
    targets = DetectionTargets(
        objectness=np.zeros((len(anchors), *grid), np.float32),
        class_index=np.full((len(anchors), *grid), -1, np.int64),
        offset_zyx=np.zeros((len(anchors), 3, *grid), np.float32),
        log_radius_ratio=np.zeros((len(anchors), *grid), np.float32),
        n_collisions=int(len(centres) - len(np.unique(particle[win]))),
    )
    index = (anchor[win], *cells[win].T)
    targets.objectness[index] = 1.0
    targets.class_index[index] = classes[particle[win]]
    targets.offset_zyx[anchor[win], :, cells[win, 0], cells[win, 1], cells[win, 2]] = offsets[win]
    targets.log_radius_ratio[index] = np.log(radii[particle[win]] / anchors[anchor[win]])
    return targets


@dataclass(frozen=True)
class DetectionTargetEncoder:
    """The detector's target for ``cryokit.data.dataset.PatchDataset``: ``encode_detection_targets`` with
    the catalog radii and the anchors of grouping ``anchors`` at the data's spacing, as a dict of tensors."""

    stride: int = 4
    positive_radius_cells: float = 0.0
    anchors: str = "size_groups"  # a key of ``cryokit.models.anchors.ANCHOR_GROUPINGS``

    def __call__(
        self, size_zyx, centres_voxel_zyx, class_indices, voxel_spacing_angstrom_zyx
    ) -> dict[str, torch.Tensor]:
        radii = class_radii_voxels(voxel_spacing_angstrom_zyx)[np.asarray(class_indices, dtype=np.int64)]
        return encode_detection_targets(
            size_zyx,
            centres_voxel_zyx,
            class_indices,
            radii,
            anchor_radii_voxels(voxel_spacing_angstrom_zyx, self.anchors),
            self.stride,
            class_anchor_indices(self.anchors),
            self.positive_radius_cells,
        ).as_tensors()


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
    centres = torch.from_numpy(cell_centres_voxel(cells.numpy(), stride)) + off[a, :, z, y, x].double() * stride
    anchors = torch.as_tensor(np.asarray(anchors_voxels, dtype=np.float64))
    radii = anchors[a] * torch.exp(logr[a, z, y, x].double())
    return Detections(
        centres.numpy(), best_class[a, z, y, x].numpy().astype(np.int64), score[a, z, y, x].numpy(), radii.numpy()
    )
