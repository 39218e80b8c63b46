"""What the trainer plugs in per model family: a loss, dense maps for stitching, and a decoder.

The trainer, the validator and ``cryokit predict`` know nothing about U-Nets or detectors: they call a
``Task``. A task turns a network's output for a batch of windows into dense maps (B, K, z, y, x) that
MONAI's sliding-window inferer can blend, and turns the stitched maps of a whole tomogram into scored
picks in Angstrom.

* ``SegmentationTask``: a U-Net on ball label maps (softmax over background + 6 classes) or on
  Gaussian heatmaps (one sigmoid per class); dense maps are the 6 class probabilities; picks come from
  ``cryokit.postprocess.maps_to_picks``.
* ``DetectionTask``: the YOLO-style detector; dense maps are per anchor [objectness, 6 class
  probabilities, 3 centre offsets, log radius ratio] at the grid stride, so overlapping windows blend
  into one grid that is decoded once and cleaned by per-class spherical NMS.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryokit.config import PostprocessConfig
from cryokit.coords import radius_angstrom_to_voxels, voxel_zyx_to_angstrom_xyz
from cryokit.losses import LossOutput, focal_loss
from cryokit.particles import PARTICLE_NAMES, particle
from cryokit.postprocess import empty_scored_picks, maps_to_picks, spherical_nms
from cryokit.targets import N_CLASSES, decode_detections, split_detection_maps

__all__ = ["SegmentationTask", "DetectionTask", "HeatmapFocalLoss", "apply_thresholds"]


def apply_thresholds(picks: pd.DataFrame, thresholds: Mapping[str, float], default: float) -> pd.DataFrame:
    """Rows whose ``score`` reaches their class's threshold (``default`` for classes not listed)."""
    floor = picks["particle_type"].map(lambda name: thresholds.get(name, default)).astype(float)
    return picks[picks["score"] >= floor].reset_index(drop=True)


class HeatmapFocalLoss(nn.Module):
    """Sigmoid focal loss of (B, 6, Z, Y, X) logits against Gaussian heatmaps in [0, 1]."""

    def __init__(self, gamma: float = 2.0, positive_weight: float = 8.0):
        super().__init__()
        self.gamma, self.positive_weight = gamma, positive_weight

    def forward(self, logits: torch.Tensor, heatmaps: torch.Tensor) -> LossOutput:
        per_voxel = focal_loss(logits, heatmaps, alpha=None, gamma=self.gamma, reduction="none")
        # Up-weight the rare voxels near centres; the mean keeps the scale independent of patch size.
        weights = 1.0 + (self.positive_weight - 1.0) * heatmaps
        total = (per_voxel * weights).mean()
        return LossOutput(total, {"focal": float(total.detach())})


class SegmentationTask:
    """U-Net track. ``kind`` "balls": logits (B, 7, ...) with background first; "gaussian": (B, 6, ...).

    Args:
        kind: target kind the dataset renders ("balls" or "gaussian").
        loss: a loss returning ``LossOutput`` for (logits, target).
        output_stride: 1 or 2 (the network's logits are at 1/output_stride resolution).
    """

    vector_channels: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, kind: str, loss: nn.Module, output_stride: int = 1):
        if kind not in ("balls", "gaussian"):
            raise ValueError(f"SegmentationTask kind must be 'balls' or 'gaussian', got {kind!r}")
        self.kind, self.loss_fn, self.output_stride = kind, loss, output_stride
        self.n_outputs = N_CLASSES + 1 if kind == "balls" else N_CLASSES

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> LossOutput:
        return self.loss_fn(outputs, target)

    def dense_maps(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B, 6, z, y, x) class probabilities."""
        if self.kind == "balls":
            return outputs.float().softmax(dim=1)[:, 1:]
        return outputs.float().sigmoid()

    def decode(
        self, maps_czyx: np.ndarray, voxel_spacing_angstrom_zyx, run: str, post: PostprocessConfig
    ) -> pd.DataFrame:
        """Scored candidate picks (every peak above ``post.candidate_floor``) of one tomogram."""
        return maps_to_picks(
            maps_czyx,
            PARTICLE_NAMES,
            voxel_spacing_angstrom_zyx,
            run,
            thresholds=post.candidate_floor,
            method=post.method,
            radius_fraction=post.radius_fraction,
            output_stride=self.output_stride,
        )


class DetectionTask:
    """Detector track: YOLO3D outputs (a dict of maps at the grid stride) and ``CompositeDetectionLoss``.

    Args:
        loss: ``CompositeDetectionLoss`` (or any loss taking the output and target dicts).
        anchors_voxels: (A,) anchor radii in voxels at the data level.
        stride: the detector's grid stride.
    """

    def __init__(self, loss: nn.Module, anchors_voxels: Sequence[float], stride: int = 4):
        self.loss_fn, self.stride = loss, int(stride)
        self.output_stride = self.stride
        self.anchors_voxels = np.asarray(anchors_voxels, dtype=np.float64)
        per_anchor = 5 + N_CLASSES
        # Offsets (z, y, x) of anchor a sit at channels a*per_anchor + 1 + C + (0, 1, 2).
        self.vector_channels = tuple(
            tuple(a * per_anchor + 1 + N_CLASSES + i for i in range(3)) for a in range(len(self.anchors_voxels))
        )

    def loss(self, outputs: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> LossOutput:
        return self.loss_fn(outputs, target)

    def dense_maps(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, A * (5 + 6), Gz, Gy, Gx): per anchor objectness, class probabilities, offsets, log radius."""
        objectness = outputs["objectness"].float().sigmoid()[:, :, None]
        classes = outputs["class_scores"].float().softmax(dim=2)
        per_anchor = torch.cat(
            [objectness, classes, outputs["offset_zyx"].float(), outputs["log_radius_ratio"].float()[:, :, None]], dim=2
        )
        return per_anchor.flatten(1, 2)

    def decode(
        self, maps_kzyx: np.ndarray, voxel_spacing_angstrom_zyx, run: str, post: PostprocessConfig
    ) -> pd.DataFrame:
        """Decode the stitched grid, then per-class spherical NMS at ``radius_fraction`` of the class radius."""
        named = split_detection_maps(torch.as_tensor(maps_kzyx)[None], len(self.anchors_voxels))
        found = decode_detections(
            **{k: v[0] for k, v in named.items()},
            stride=self.stride,
            anchors_voxels=self.anchors_voxels,
            threshold=post.candidate_floor,
        )
        frames = []
        for class_index, name in enumerate(PARTICLE_NAMES):
            mine = found.class_indices == class_index
            if not mine.any():
                continue
            radius = post.radius_fraction * radius_angstrom_to_voxels(
                particle(name).radius_angstrom, voxel_spacing_angstrom_zyx
            )
            keep = spherical_nms(found.centres_voxel_zyx[mine], found.scores[mine], radius)
            xyz = voxel_zyx_to_angstrom_xyz(found.centres_voxel_zyx[mine][keep], voxel_spacing_angstrom_zyx)
            frames.append(
                pd.DataFrame(
                    {
                        "experiment": run,
                        "particle_type": name,
                        "x": xyz[:, 0],
                        "y": xyz[:, 1],
                        "z": xyz[:, 2],
                        "score": found.scores[mine][keep],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True) if frames else empty_scored_picks()
