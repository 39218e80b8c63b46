"""Config -> model and task: the only place names in a config become classes.

Everything downstream (trainer, validator, ``cryokit predict``, the Kaggle notebook) receives a
network and a ``cryokit.tasks`` task built here, from explicit arguments.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from cryokit.config import LossConfig, ModelConfig, RunConfig, TargetConfig
from cryokit.losses import build_loss
from cryokit.models.detector import YOLO3D
from cryokit.models.resnet3d import medicalnet_resnet18
from cryokit.models.unet import UNET_ARCHITECTURES, segmentation_unet
from cryokit.targets import N_CLASSES, anchor_radii_voxels
from cryokit.tasks import DetectionTask, HeatmapFocalLoss, SegmentationTask

__all__ = ["MODEL_NAMES", "build_model", "build_task", "build_model_and_task"]

MODEL_NAMES = UNET_ARCHITECTURES + ("yolo3d",)


def _check_pairing(model: ModelConfig, target: TargetConfig, loss: LossConfig) -> None:
    if model.name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {model.name!r}")
    detector = model.name == "yolo3d"
    if detector != (target.kind == "detection") or detector != (loss.name == "detection"):
        raise ValueError(
            f"model.name={model.name!r}, target.kind={target.kind!r} and loss.name={loss.name!r} do not fit: "
            "yolo3d trains on target.kind='detection' with loss.name='detection'; U-Nets on 'balls' or 'gaussian'"
        )


def build_model(model: ModelConfig, target: TargetConfig, voxel_spacing_angstrom_zyx: Sequence[float]) -> nn.Module:
    """The network for ``model.name`` (anchors for the detector come from the data's voxel spacing)."""
    if model.name == "yolo3d":
        backbone = medicalnet_resnet18(shortcut_type="A", weights_path=model.backbone_weights or None)
        return YOLO3D(
            N_CLASSES,
            anchor_radii_voxels(voxel_spacing_angstrom_zyx),
            backbone=backbone,
            neck_channels=model.neck_channels,
            stride=target.stride,
        )
    out_channels = N_CLASSES + 1 if target.kind == "balls" else N_CLASSES
    return segmentation_unet(
        model.name, out_channels, model.channels, model.strides, model.num_res_units, model.dropout, target.stride
    )


def build_task(config: RunConfig, voxel_spacing_angstrom_zyx: Sequence[float]):
    """The task (loss, dense maps, decoder) that goes with the configured model."""
    model, target, loss = config.model, config.target, config.loss
    _check_pairing(model, target, loss)
    if model.name == "yolo3d":
        return DetectionTask(
            build_loss(loss, N_CLASSES), anchor_radii_voxels(voxel_spacing_angstrom_zyx), target.stride
        )
    if target.kind == "gaussian":
        return SegmentationTask("gaussian", HeatmapFocalLoss(loss.focal_gamma, loss.particle_weight), target.stride)
    return SegmentationTask("balls", build_loss(loss, N_CLASSES + 1), target.stride)


def build_model_and_task(config: RunConfig, voxel_spacing_angstrom_zyx: Sequence[float]):
    """``(network, task)`` for a run configuration."""
    task = build_task(config, voxel_spacing_angstrom_zyx)
    return build_model(config.model, config.target, voxel_spacing_angstrom_zyx), task
