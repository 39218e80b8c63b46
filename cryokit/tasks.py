"""What the trainer and the predictor plug in per model family: a loss, dense maps, and a decoder.

The trainer, the validator and ``cryokit predict`` know nothing about U-Nets or detectors: they call a
``Task``. A task turns a network's output for a batch of windows into dense maps (B, K, z, y, x) that
the sliding-window inferer can blend, and turns the stitched maps of a whole tomogram into scored
picks in Angstrom (every candidate above its ``candidate_floor``; thresholds are applied later). When
the thresholds are known before decoding (one model or one group, no ensemble), ``floors`` raises each
class's floor to its threshold: the picks that pass the threshold are the same (a local maximum does not
depend on the floor, and greedy NMS keeps a candidate only because of higher-scored ones), and on the
CPU the max-filter then runs on far fewer tiles.

* ``SegmentationTask``: a U-Net on ball label maps (softmax over background + 6 classes) or on
  Gaussian heatmaps (one sigmoid per class); dense maps are the 6 class probabilities; picks come from
  ``cryokit.postprocess.maps_to_picks``.
* ``DetectionTask``: the YOLO-style detector; dense maps follow ``DetectionLayout`` at the grid stride,
  so overlapping windows blend into one grid that is decoded once and cleaned by per-class spherical NMS.

``cryokit.models.build`` builds both from a configuration; nothing here reads one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryokit.coords import radius_angstrom_to_voxels, voxel_zyx_to_angstrom_xyz
from cryokit.data.targets import N_CLASSES
from cryokit.losses import LossOutput
from cryokit.models.detection_coder import DetectionLayout, decode_detections
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.postprocess import (
    PEAK_BACKENDS,
    PEAK_METHODS,
    empty_scored_picks,
    maps_to_picks,
    scored_picks,
    smooth_maps,
    spherical_nms,
)

__all__ = ["Task", "PeakDecoding", "SegmentationTask", "DetectionTask"]


class Task(Protocol):
    """The interface the trainer, the validator and the predictor use.

    Attributes:
        output_stride: input voxels per output cell of the network.
        vector_channels: (z, y, x) channel triples of the dense maps that hold displacements (TTA turns them).
    """

    output_stride: int
    vector_channels: tuple[tuple[int, int, int], ...]

    def loss(self, outputs: Any, target: Any) -> LossOutput: ...

    def dense_maps(self, outputs: Any) -> torch.Tensor: ...

    def decode(
        self,
        maps: np.ndarray | torch.Tensor,
        voxel_spacing_angstrom_zyx,
        run: str,
        floors: Mapping[str, float | None] | None = None,
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class PeakDecoding:
    """How maps become candidates.

    Attributes:
        method: "maxpool" (max-filter NMS) or "components" (connected components); segmentation only.
        radius_fraction: NMS radius as a share of the class's catalog radius.
        candidate_floor: candidates below this score are dropped (thresholds are tuned above it).
        min_voxels_fraction: "components": the smallest component kept, as a share of the volume of a ball
            of ``radius_fraction`` times the catalog radius.
        backend: "maxpool" peaks in "scipy" (on the host) or "torch" (where the maps lie); "auto": torch
            for maps on a GPU, scipy for maps on the CPU (the faster there). The same picks either way.
        smooth_sigma_angstrom: segmentation maps are blurred by a Gaussian of this sigma before decoding
            (``cryokit.postprocess.smooth_maps``); 0 leaves them as they are.
        refine: segmentation "maxpool" peaks get sub-cell centres (``cryokit.postprocess.refine_centres``);
            False keeps the cell centres.
    """

    method: str = "maxpool"
    radius_fraction: float = 0.5
    candidate_floor: float = 0.05
    min_voxels_fraction: float = 0.1
    backend: str = "auto"
    smooth_sigma_angstrom: float = 0.0
    refine: bool = True

    def __post_init__(self) -> None:
        if self.method not in PEAK_METHODS:
            raise ValueError(f"peak method must be one of {PEAK_METHODS}, got {self.method!r}")
        if self.backend not in PEAK_BACKENDS:
            raise ValueError(f"peak backend must be one of {PEAK_BACKENDS}, got {self.backend!r}")
        if not (
            self.radius_fraction > 0
            and 0 <= self.candidate_floor
            and self.min_voxels_fraction >= 0
            and self.smooth_sigma_angstrom >= 0
        ):
            raise ValueError(
                f"need radius_fraction > 0, candidate_floor >= 0, min_voxels_fraction >= 0 and "
                f"smooth_sigma_angstrom >= 0, got {self.radius_fraction}, {self.candidate_floor}, "
                f"{self.min_voxels_fraction}, {self.smooth_sigma_angstrom}"
            )

    def min_voxels(
        self, name: str, voxel_spacing_angstrom_zyx, output_stride: int, catalog: ParticleCatalog = COMPETITION_CATALOG
    ) -> int:
        """Smallest component (in cells) kept for class ``name`` by the "components" method."""
        radius_cells = (
            self.radius_fraction
            * radius_angstrom_to_voxels(catalog.get(name).radius_angstrom, voxel_spacing_angstrom_zyx)
            / output_stride
        )
        return max(1, int(round(self.min_voxels_fraction * 4 / 3 * math.pi * radius_cells**3)))


class SegmentationTask:
    """U-Net track. ``kind`` "balls": logits (B, 7, ...) with background first; "gaussian": (B, 6, ...).

    Args:
        kind: target kind the dataset renders ("balls" or "gaussian").
        loss: a loss returning ``LossOutput`` for (logits, target).
        output_stride: 1 or 2 (the network's logits are at 1/output_stride resolution).
        decoding: peak finding settings.
    """

    vector_channels: tuple[tuple[int, int, int], ...] = ()

    def __init__(
        self,
        kind: str,
        loss: nn.Module,
        output_stride: int = 1,
        decoding: PeakDecoding = PeakDecoding(),
        catalog: ParticleCatalog = COMPETITION_CATALOG,
    ):
        if kind not in ("balls", "gaussian"):
            raise ValueError(f"SegmentationTask kind must be 'balls' or 'gaussian', got {kind!r}")
        self.kind, self.loss_fn, self.output_stride, self.decoding = kind, loss, output_stride, decoding
        self.catalog = catalog
        self.n_outputs = len(catalog) + 1 if kind == "balls" else len(catalog)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> LossOutput:
        return self.loss_fn(outputs, target)

    def dense_maps(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B, 6, z, y, x) class probabilities (of the main head, for a deeply supervised network's heads)."""
        if outputs.ndim == 6:
            outputs = outputs[:, 0]
        if self.kind == "balls":
            return outputs.float().softmax(dim=1)[:, 1:]
        return outputs.float().sigmoid()

    def decode(
        self,
        maps_czyx: np.ndarray | torch.Tensor,
        voxel_spacing_angstrom_zyx,
        run: str,
        floors: Mapping[str, float | None] | None = None,
    ) -> pd.DataFrame:
        """Scored candidate picks (every peak above the candidate floor) of one tomogram; maps on a GPU
        are decoded there (``PeakDecoding.backend``).

        ``floors``: per-class thresholds that will be applied to the picks (None skips a class); with the
        "maxpool" method they raise the floor and return exactly the picks that pass them. The
        "components" method ignores them: its components, hence centres, depend on the floor.
        """
        d = self.decoding
        names = self.catalog.names
        if d.smooth_sigma_angstrom > 0:
            cell_angstrom_zyx = [float(v) * self.output_stride for v in voxel_spacing_angstrom_zyx]
            maps_czyx = smooth_maps(maps_czyx, d.smooth_sigma_angstrom, cell_angstrom_zyx)
        min_voxels = {
            name: d.min_voxels(name, voxel_spacing_angstrom_zyx, self.output_stride, self.catalog) for name in names
        }
        return maps_to_picks(
            maps_czyx,
            names,
            voxel_spacing_angstrom_zyx,
            run,
            thresholds=_raised_floors(d.candidate_floor, names, floors if d.method == "maxpool" else None),
            method=d.method,
            radius_fraction=d.radius_fraction,
            refine=d.refine,
            min_voxels=min_voxels,
            output_stride=self.output_stride,
            catalog=self.catalog,
            backend=d.backend,
        )


class DetectionTask:
    """Detector track: YOLO3D outputs (a dict of maps at the grid stride) and ``CompositeDetectionLoss``.

    Args:
        loss: ``CompositeDetectionLoss`` (or any loss taking the output and target dicts).
        anchors_voxels: (A,) anchor radii in voxels at the data level.
        stride: the detector's grid stride.
        decoding: candidate floor and the spherical NMS radius (``method`` is not used).
    """

    def __init__(
        self, loss: nn.Module, anchors_voxels: Sequence[float], stride: int = 4, decoding: PeakDecoding = PeakDecoding()
    ):
        self.loss_fn, self.stride, self.output_stride, self.decoding = loss, int(stride), int(stride), decoding
        self.anchors_voxels = np.asarray(anchors_voxels, dtype=np.float64)
        self.catalog = COMPETITION_CATALOG  # the detector's anchors are the competition's size groups
        self.layout = DetectionLayout(len(self.anchors_voxels), N_CLASSES)
        self.vector_channels = self.layout.vector_channels

    def loss(self, outputs: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> LossOutput:
        return self.loss_fn(outputs, target)

    def dense_maps(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, A * (5 + 6), Gz, Gy, Gx): ``DetectionLayout.pack``."""
        return self.layout.pack(outputs)

    def decode(
        self,
        maps_kzyx: np.ndarray | torch.Tensor,
        voxel_spacing_angstrom_zyx,
        run: str,
        floors: Mapping[str, float | None] | None = None,
    ) -> pd.DataFrame:
        """Decode the stitched grid, then per-class spherical NMS at ``radius_fraction`` of the class radius.

        ``floors``: per-class thresholds that will be applied (None skips a class); the cells under them
        are dropped before the NMS, which leaves the picks that pass them as they were.
        """
        named = self.layout.split(torch.as_tensor(maps_kzyx)[None])
        raised = _raised_floors(self.decoding.candidate_floor, self.catalog.names, floors)
        found = decode_detections(
            **{k: v[0] for k, v in named.items()},
            stride=self.stride,
            anchors_voxels=self.anchors_voxels,
            threshold=min((f for f in raised.values() if f is not None), default=math.inf),
        )
        frames = []
        for class_index, name in enumerate(self.catalog.names):
            if raised[name] is None:
                continue
            mine = (found.class_indices == class_index) & (found.scores >= raised[name])
            if not mine.any():
                continue
            radius_voxels = self.decoding.radius_fraction * radius_angstrom_to_voxels(
                self.catalog.get(name).radius_angstrom, voxel_spacing_angstrom_zyx
            )
            keep = spherical_nms(found.centres_voxel_zyx[mine], found.scores[mine], radius_voxels)
            xyz = voxel_zyx_to_angstrom_xyz(found.centres_voxel_zyx[mine][keep], voxel_spacing_angstrom_zyx)
            frames.append(scored_picks(run, name, xyz, found.scores[mine][keep]))
        return pd.concat(frames, ignore_index=True) if frames else empty_scored_picks()


def _raised_floors(
    candidate_floor: float, names: Sequence[str], floors: Mapping[str, float | None] | None
) -> dict[str, float | None]:
    """Each class's decoding floor: the candidate floor, raised to its entry of ``floors`` (None: skip it)."""
    if floors is None:
        return {name: candidate_floor for name in names}
    raised = {}
    for name in names:
        floor = floors.get(name, candidate_floor)
        raised[name] = None if floor is None else max(candidate_floor, float(floor))
    return raised
