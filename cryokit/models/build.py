"""Config -> network, loss, task and inference windows: the only place a configuration becomes objects.

Everything downstream (trainer, validator, ``cryokit predict``, the Kaggle notebook) receives a network,
a ``cryokit.tasks`` task and a ``SlidingWindow`` built here from explicit arguments.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import nn

from cryokit.config import (
    AugmentConfig,
    DataConfig,
    LossConfig,
    ModelConfig,
    PatchConfig,
    PostprocessConfig,
    RunConfig,
    TargetConfig,
)
from cryokit.data.augment import Augmenter
from cryokit.data.dataset import PatchDataset
from cryokit.data.targets import N_CLASSES, BallTargets, GaussianTargets, TargetRenderer
from cryokit.inference.sliding_window import SlidingWindow
from cryokit.io.source import CopickSource, DataSource, KaggleSource
from cryokit.losses import CompositeDetectionLoss, DeepSupervisionLoss, DiceCELoss, HeatmapFocalLoss
from cryokit.models.anchors import ANCHOR_GROUPINGS, anchor_radii_voxels
from cryokit.models.detection_coder import DetectionTargetEncoder, detector_offset_bound
from cryokit.models.detector import YOLO3D
from cryokit.models.resnet3d import MEDICALNET_WIDTH, medicalnet_resnet18
from cryokit.models.unet import UNET_ARCHITECTURES, segmentation_unet
from cryokit.particles import COMPETITION_CATALOG, PARTICLES, ParticleCatalog
from cryokit.tasks import DetectionTask, PeakDecoding, SegmentationTask, Task
from cryokit.thresholds import check_threshold_scale

__all__ = [
    "MODEL_NAMES",
    "LOSS_NAMES",
    "PARTICLE_WEIGHTINGS",
    "TARGET_KINDS",
    "build_model",
    "build_target",
    "build_loss",
    "segmentation_class_weights",
    "build_task",
    "build_model_and_task",
    "sliding_window",
    "peak_decoding",
]

MODEL_NAMES = UNET_ARCHITECTURES + ("yolo3d",)
LOSS_NAMES = ("dice_ce", "dice_focal", "focal", "tversky_ce", "detection")
PARTICLE_WEIGHTINGS = ("uniform", "volume")
TARGET_KINDS = ("balls", "gaussian", "detection")


def _check_pairing(model: ModelConfig, target: TargetConfig, loss: LossConfig) -> None:
    if model.name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {model.name!r}")
    if model.deep_supervision and model.name != "dynunet":
        raise ValueError(
            f"model.deep_supervision={model.deep_supervision} needs model.name='dynunet', got {model.name!r}"
        )
    # Refused here, before data or weights are read; medicalnet_resnet18 refuses the same, naming the file.
    if model.backbone_width < 1 or (model.backbone_weights and model.backbone_width != MEDICALNET_WIDTH):
        raise ValueError(
            f"model.backbone_width must be >= 1, and {MEDICALNET_WIDTH} (MedicalNet's) with model.backbone_weights; "
            f"got {model.backbone_width} with backbone_weights={model.backbone_weights!r}"
        )
    detector = model.name == "yolo3d"
    if detector != (target.kind == "detection") or detector != (loss.name == "detection"):
        raise ValueError(
            f"model.name={model.name!r}, target.kind={target.kind!r} and loss.name={loss.name!r} do not fit: "
            "yolo3d trains on target.kind='detection' with loss.name='detection'; U-Nets on 'balls' or 'gaussian'"
        )
    if target.positive_radius_cells and target.kind != "detection":
        raise ValueError(
            f"target.positive_radius_cells={target.positive_radius_cells} samples the detector's positive cells; "
            f"target.kind={target.kind!r} needs 0"
        )
    if target.anchors not in ANCHOR_GROUPINGS:
        raise ValueError(f"target.anchors must be one of {tuple(ANCHOR_GROUPINGS)}, got {target.anchors!r}")
    if target.anchors != "size_groups" and target.kind != "detection":
        raise ValueError(
            f"target.anchors={target.anchors!r} groups the detector's classes; "
            f"target.kind={target.kind!r} needs 'size_groups'"
        )
    if loss.particle_weighting != "uniform" and target.kind != "balls":
        raise ValueError(
            f"loss.particle_weighting={loss.particle_weighting!r} weighs ball targets' classes; "
            f"target.kind={target.kind!r} needs 'uniform'"
        )


def _check_detector_catalog(model: ModelConfig, catalog: ParticleCatalog) -> None:
    if model.name == "yolo3d" and catalog != COMPETITION_CATALOG:
        raise ValueError(
            f"model.name='yolo3d' has anchors for the competition's six particles only; the catalog of "
            f"{catalog.source} ({', '.join(catalog.names)}) needs a U-Net model"
        )


def build_model(
    model: ModelConfig,
    target: TargetConfig,
    voxel_spacing_angstrom_zyx: Sequence[float],
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> nn.Module:
    """The network for ``model.name``: one output channel per catalog particle (plus background for balls);
    anchors for the detector come from the data's voxel spacing."""
    _check_detector_catalog(model, catalog)
    if model.name == "yolo3d":
        backbone = medicalnet_resnet18(
            shortcut_type="A", weights_path=model.backbone_weights or None, width=model.backbone_width
        )
        return YOLO3D(
            N_CLASSES,
            anchor_radii_voxels(voxel_spacing_angstrom_zyx, target.anchors),
            backbone=backbone,
            neck_channels=model.neck_channels,
            stride=target.stride,
            offset_bound=detector_offset_bound(target.positive_radius_cells),
        )
    out_channels = len(catalog) + 1 if target.kind == "balls" else len(catalog)
    return segmentation_unet(
        model.name,
        out_channels,
        model.channels,
        model.strides,
        model.num_res_units,
        model.dropout,
        target.stride,
        model.deep_supervision,
    )


def build_loss(loss: LossConfig, n_classes: int, class_weights: Sequence[float] | None = None) -> nn.Module:
    """Map a ``LossConfig`` onto a loss of ``cryokit.losses``.

    ``name``: "dice_ce" (Dice + CE), "dice_focal" or its alias "focal" (Dice + focal; set
    ``dice_weight=0`` for focal alone), "tversky_ce" (Tversky + CE), all for (B, n_classes, Z, Y, X)
    segmentation logits with background first, or "detection" (``CompositeDetectionLoss``).

    Args:
        loss: the loss section of a run configuration.
        n_classes: channels of the logits (segmentation: background + particles; detection: particles).
        class_weights: segmentation: per-channel CE weights (default background ``background_weight``,
            every particle ``particle_weight``); detection: F-beta weights (default the metric's particle
            weights when ``n_classes`` is 6, else equal).
    """
    if loss.name not in LOSS_NAMES:
        raise ValueError(f"loss name must be one of {LOSS_NAMES}, got {loss.name!r}")
    if class_weights is not None and len(class_weights) != n_classes:
        raise ValueError(f"class_weights has {len(class_weights)} values for n_classes={n_classes}")
    if loss.name == "detection":
        if class_weights is None and n_classes == len(PARTICLES):
            class_weights = [float(p.weight) for p in PARTICLES]
        return CompositeDetectionLoss(
            loss.lambda_focal,
            loss.lambda_fbeta,
            loss.lambda_box,
            alpha=loss.focal_alpha,
            gamma=loss.focal_gamma,
            beta=loss.beta,
            class_weights=class_weights,
            smooth_l1_beta=loss.smooth_l1_beta,
        )
    if class_weights is None:
        class_weights = [loss.background_weight] + [loss.particle_weight] * (n_classes - 1)
    overlap = "tversky" if loss.name == "tversky_ce" else "dice"
    voxel = "focal" if loss.name in ("dice_focal", "focal") else "ce"
    extra = {"tversky_alpha": loss.tversky_alpha, "tversky_beta": loss.tversky_beta} if overlap == "tversky" else {}
    return DiceCELoss(
        loss.dice_weight,
        loss.ce_weight,
        class_weights,
        overlap=overlap,
        voxel=voxel,
        focal_gamma=loss.focal_gamma,
        label_smoothing=loss.label_smoothing,
        **extra,
    )


def segmentation_class_weights(loss: LossConfig, catalog: ParticleCatalog = COMPETITION_CATALOG) -> list[float]:
    """Cross-entropy weights of (background, *catalog classes) for ball targets (``loss.particle_weighting``).

    "volume" weighs each class in proportion to ``radius ** -3`` with mean ``particle_weight``: a class's
    ball voxels per particle grow as its radius cubed, so these weights give every particle the same
    weight whatever its size.
    """
    if loss.particle_weighting not in PARTICLE_WEIGHTINGS:
        raise ValueError(
            f"loss.particle_weighting must be one of {PARTICLE_WEIGHTINGS}, got {loss.particle_weighting!r}"
        )
    if loss.particle_weighting == "uniform":
        return [loss.background_weight] + [loss.particle_weight] * len(catalog)
    inverse_volume = np.array([p.radius_angstrom for p in catalog], dtype=float) ** -3
    return [loss.background_weight, *(loss.particle_weight * inverse_volume / inverse_volume.mean()).tolist()]


def build_target(target: TargetConfig, catalog: ParticleCatalog = COMPETITION_CATALOG) -> TargetRenderer:
    """What the training dataset renders for each patch."""
    if target.kind == "balls":
        return BallTargets(target.radius_fraction, target.stride, catalog)
    if target.kind == "gaussian":
        return GaussianTargets(target.radius_fraction, target.stride, catalog)
    if target.kind == "detection":
        return DetectionTargetEncoder(target.stride, target.positive_radius_cells, target.anchors)
    raise ValueError(f"target.kind must be one of {TARGET_KINDS}, got {target.kind!r}")


def data_source(data: DataConfig) -> DataSource:
    """Where the configured runs are: a copick project when ``data.copick`` is set, else a Kaggle root."""
    if data.copick:
        if data.root:
            raise ValueError(f"data.root={data.root!r} and data.copick={data.copick!r} both set: give one")
        return CopickSource(data.copick, data.voxel_spacing, data.pick_user, data.pick_session)
    return KaggleSource(data.root, data.split)


def build_dataset(
    data: DataConfig,
    patch: PatchConfig,
    target: TargetConfig,
    augment: AugmentConfig | None,
    runs: Sequence[str],
    seed: int = 0,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
    source: DataSource | None = None,
) -> PatchDataset:
    """The training patches of ``runs`` (use ``cryokit.data.dataset.split_runs`` for the train/val split)."""
    return PatchDataset(
        source if source is not None else data_source(data),
        runs,
        size_zyx=patch.size_zyx,
        patches_per_epoch=patch.patches_per_epoch,
        positive_share=patch.positive_share,
        class_oversampling=patch.class_oversampling,
        jitter_fraction=patch.jitter_fraction,
        target=build_target(target, catalog),
        augmenter=None if augment is None else Augmenter.from_config(augment),
        tomo_type=data.train_tomo_types or data.tomo_type,
        level=data.level,
        seed=seed,
        catalog=catalog,
    )


def peak_decoding(post: PostprocessConfig) -> PeakDecoding:
    """How the task turns maps into candidates."""
    return PeakDecoding(
        post.method,
        post.radius_fraction,
        post.candidate_floor,
        post.min_voxels_fraction,
        smooth_sigma_angstrom=post.smooth_sigma_angstrom,
        refine=post.refine,
    )


def sliding_window(patch: PatchConfig) -> SlidingWindow:
    """The inference windows of a run configuration."""
    return SlidingWindow(tuple(patch.size_zyx), patch.inference_overlap, patch.inference_batch_size)


def build_task(
    model: ModelConfig,
    target: TargetConfig,
    loss: LossConfig,
    post: PostprocessConfig,
    voxel_spacing_angstrom_zyx: Sequence[float],
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> Task:
    """The task (loss, dense maps, decoder) that goes with the configured model and catalog."""
    _check_pairing(model, target, loss)
    _check_detector_catalog(model, catalog)
    if model.name == "yolo3d" and post.smooth_sigma_angstrom:
        raise ValueError(
            f"postprocess.smooth_sigma_angstrom={post.smooth_sigma_angstrom} blurs U-Net maps; the detector "
            "(model.name='yolo3d') places its peaks by offsets: set it to 0"
        )
    check_threshold_scale(post.threshold_scale, "postprocess.threshold_scale")
    n_classes = len(catalog)
    decoding = peak_decoding(post)
    if model.name == "yolo3d":
        return DetectionTask(
            build_loss(loss, N_CLASSES),
            anchor_radii_voxels(voxel_spacing_angstrom_zyx, target.anchors),
            target.stride,
            decoding,
        )
    if target.kind == "gaussian":
        loss_fn = HeatmapFocalLoss(loss.focal_gamma, loss.particle_weight)
    else:
        loss_fn = build_loss(loss, n_classes + 1, segmentation_class_weights(loss, catalog))
    if model.deep_supervision:
        loss_fn = DeepSupervisionLoss(loss_fn)
    return SegmentationTask(target.kind, loss_fn, target.stride, decoding, catalog)


def build_model_and_task(
    config: RunConfig, voxel_spacing_angstrom_zyx: Sequence[float], catalog: ParticleCatalog = COMPETITION_CATALOG
) -> tuple[nn.Module, Task]:
    """``(network, task)`` for a run configuration and particle catalog."""
    task = build_task(config.model, config.target, config.loss, config.postprocess, voxel_spacing_angstrom_zyx, catalog)
    return build_model(config.model, config.target, voxel_spacing_angstrom_zyx, catalog), task
