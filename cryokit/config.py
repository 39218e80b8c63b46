"""Typed run configuration: one frozen dataclass per stage, nested in ``RunConfig``.

``to_dict`` feeds MLflow and checkpoints; ``from_dict`` takes a YAML/JSON mapping (and papermill,
CLI and Optuna overrides) and refuses unknown keys by name, which a plain dict or SimpleNamespace
never does. Models, losses and post-processors never see these objects: ``cryokit.models.build``
and friends map them onto explicit arguments at the edge.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "DataConfig",
    "PatchConfig",
    "TargetConfig",
    "AugmentConfig",
    "ModelConfig",
    "LossConfig",
    "TrainConfig",
    "PostprocessConfig",
    "TrackingConfig",
    "RunConfig",
    "to_dict",
    "from_dict",
    "load_config",
    "read_config_file",
    "apply_overrides",
    "replace",
    "config_differences",
    "MODEL_PRESETS",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and which part of it trains or validates."""

    root: str = ""  # competition root (holds train/ and test/)
    split: str = "train"
    # A copick project instead of a Kaggle root: its config file, the voxel spacing (Angstrom, as copick
    # names it) and whose picks train and score (empty session: every session of the user).
    copick: str = ""
    voxel_spacing: float = 0.0
    pick_user: str = ""
    pick_session: str = ""
    train_runs: tuple[str, ...] = ()  # empty: every run of the split not in val_runs
    val_runs: tuple[str, ...] = ()  # whole runs held out for validation on the metric
    tomo_type: str = "denoised"  # what validation and prediction read
    # Tomo types training patches come from, each patch from one drawn at random (empty: tomo_type alone).
    # Several reconstructions of the same particles teach the network what does not depend on one.
    train_tomo_types: tuple[str, ...] = ()
    level: int = 0  # 0 full resolution (~10 A), 1 half (~20 A), 2 quarter


@dataclass(frozen=True)
class PatchConfig:
    """Training patches and sliding-window inference windows, in voxels at the data level."""

    size_zyx: tuple[int, int, int] = (64, 128, 128)
    batch_size: int = 2
    patches_per_epoch: int = 64
    positive_share: float = 0.7  # share of patches centred near a particle
    # Extra sampling weight per class for particle-centred patches (the score weighs these 2).
    class_oversampling: Mapping[str, float] = field(
        default_factory=lambda: {"thyroglobulin": 2.0, "beta-galactosidase": 2.0}
    )
    jitter_fraction: float = 0.35  # particle-centred patches are shifted by up to this share of the size
    inference_overlap: float = 0.25  # sliding-window overlap (MONAI)
    inference_batch_size: int = 2


@dataclass(frozen=True)
class TargetConfig:
    """What the network is trained to output."""

    kind: str = "balls"  # "balls" (label map), "gaussian" (heatmaps) or "detection"
    radius_fraction: float = 0.5  # ball / Gaussian sigma radius as a share of the class radius
    # Stride of the target grid, which is the network's output stride: 1 (full resolution) or 2 for
    # U-Nets, 4 (or 2, 8) for the detector. The U-Net preset (``MODEL_PRESETS["unet"]``, ``--model unet``,
    # the demo and the notebooks) trains at 2.
    stride: int = 1
    # detection: cells whose centres lie within this many cells of a particle's centre are positives too, each
    # regressing its offset to that centre (centre sampling; 0: the particle's own cell only)
    positive_radius_cells: float = 0.0
    # detection: which classes share an anchor (``cryokit.models.anchors.ANCHOR_GROUPINGS``): "size_groups"
    # (three anchors by particle size, each with its own objectness) or "one" (one anchor; the class softmax
    # chooses among all classes)
    anchors: str = "size_groups"


@dataclass(frozen=True)
class AugmentConfig:
    """One strength knob per augmentation family (0 switches a family off)."""

    flip_p: float = 0.5  # per axis
    rot90_p: float = 0.5  # 90 degree turns in the XY plane
    rotate_degrees: float = 10.0  # small rotations about arbitrary axes
    affine_p: float = 1.0  # probability of the rotation + zoom (the costliest step)
    scale_fraction: float = 0.05  # zoom by up to +-5 %
    elastic_p: float = 0.0  # probability of an elastic deformation
    elastic_magnitude_voxels: float = 2.0
    elastic_spacing_voxels: float = 24.0  # distance between the elastic field's control points
    intensity_p: float = 0.5  # shift and scale of intensities
    intensity_fraction: float = 0.1
    noise_p: float = 0.2
    noise_std: float = 0.1  # in units of the normalised intensity
    # Intensity and imaging (cryokit.data.appearance): TorchIO's gamma, blur and bias field, and in Fourier
    # space a random band-pass and an extra missing wedge of random tilt range and axis. 0 switches off.
    # On by default: on held-out randomized runs they lifted the U-Net from 0.503 to 0.617 weighted F4, and
    # on a held-out imaging family from 0.648 to 0.700 (docs/BENCHMARKS.md, "Transfer").
    gamma_p: float = 0.5
    gamma_log: float = 0.3
    blur_p: float = 0.3
    blur_std_voxels: float = 1.0
    bias_p: float = 0.3
    bias_coefficient: float = 0.3
    bandpass_p: float = 0.3
    bandpass_lowpass_voxels: float = 1.0
    bandpass_highpass_voxels: float = 8.0
    wedge_p: float = 0.3
    wedge_tilt_degrees: tuple[float, float] = (45.0, 70.0)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "unet"  # unet | basicunet | segresnet | flexibleunet | dynunet | yolo3d
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    dropout: float = 0.0
    backbone_weights: str = ""  # MedicalNet checkpoint for yolo3d (optional)
    neck_channels: int = 64  # yolo3d: width of the neck and head
    # yolo3d: channels of the ResNet-18's first stage (2, 4, 8 times as many deeper); 64 is MedicalNet's, and
    # its checkpoints (backbone_weights) need 64
    backbone_width: int = 64
    # dynunet: auxiliary heads on this many deeper decoder levels, trained on the same target with halving
    # weights (cryokit.losses.DeepSupervisionLoss); 0: none
    deep_supervision: int = 0


@dataclass(frozen=True)
class LossConfig:
    name: str = "dice_ce"  # dice_ce | dice_focal | focal | tversky_ce | detection
    # Class-weighted cross-entropy alone by default (the 1st-place recipe): on simulated runs it reached
    # validation F4 0.71 in 16 CPU epochs where Dice + CE (class weights 8) stalled at 0.34; MONAI
    # applies the class weights to the Dice term too, which then dominates. Raise dice_weight to add it.
    dice_weight: float = 0.0
    ce_weight: float = 1.0
    background_weight: float = 1.0  # cross-entropy class weight of background
    particle_weight: float = 32.0  # cross-entropy class weight of the particle classes (their mean)
    # How the particle classes share it: "uniform" (each weighs particle_weight) or "volume" (each in
    # proportion to radius^-3, mean particle_weight): a ball target's voxels grow as the radius cubed, so with
    # uniform weights the large classes outvote the small ones wherever the network is unsure.
    particle_weighting: str = "uniform"
    # Soft labels for the segmentation cross-entropy: a particle voxel's target keeps 1 - label_smoothing on its
    # class and spreads label_smoothing over the other particle classes; background stays one-hot (0: one-hot;
    # cryokit.losses.particle_smoothed_cross_entropy; docs/BENCHMARKS.md, U-Net variant default_ls01).
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    lambda_focal: float = 1.0
    lambda_fbeta: float = 1.0
    lambda_box: float = 1.0
    # detection: where the box term's smooth L1 turns from quadratic to linear, in cells (offsets) and log
    # radius ratio. At 1 its gradient on a 0.07-cell offset error is 0.07, and picks keep a ~6 A bias; 0.1
    # removes it but scored no better (docs/BENCHMARKS.md, detector variant l1beta01).
    smooth_l1_beta: float = 1.0
    beta: float = 4.0
    tversky_alpha: float = 0.3  # tversky_ce: weight of false positives
    tversky_beta: float = 0.7  # tversky_ce: weight of false negatives (> alpha favours recall)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0 switches EMA off
    amp: bool = True  # bf16/fp16 autocast on CUDA; on CPU only with cpu_bf16
    # bf16 autocast in the training steps on CPUs with native bf16 (AVX512-BF16, AMX; elsewhere fp32): 1.6x
    # (U-Net) to 1.8x (detector) the steps per CPU second here, not yet a better model for the same CPU time
    # (docs/BENCHMARKS.md, the 'bf16' rows of the U-Net and detector experiments)
    cpu_bf16: bool = False
    val_precision: str = "auto"  # validation passes: auto (as amp on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    val_every: int = 1  # epochs
    early_stopping_patience: int = 0  # epochs without a better val F4; 0 switches it off
    init_from: str = ""  # a checkpoint whose weights start the run (pretrain, then fine-tune); empty: random
    out_dir: str = "runs/train"


@dataclass(frozen=True)
class PostprocessConfig:
    method: str = "maxpool"  # maxpool | components
    radius_fraction: float = 0.5  # NMS kernel radius as a share of the class radius
    thresholds: Mapping[str, float] = field(default_factory=dict)  # per class; missing: default_threshold
    default_threshold: float = 0.2
    candidate_floor: float = 0.05  # candidates below this score are never kept (thresholds tune above it)
    # U-Net maps are blurred by a Gaussian of this sigma before peaks are found (0: not at all): a peak then
    # scores the evidence around it, not one cell (benchmarks/unet_experiments.py, 'smooth' rows)
    smooth_sigma_angstrom: float = 0.0
    min_voxels_fraction: float = 0.1  # components: smallest component as a share of the ball volume
    refine: bool = True  # U-Net max-pool peaks: sub-cell centres (docs/BENCHMARKS.md, "U-Net decoding")
    # The thresholds tuned on the validation runs are multiplied by this before they are saved for other runs
    # (the checkpoint's, thresholds.json): ``cryokit.thresholds.THRESHOLD_SCALE``; 1 keeps the optimum.
    threshold_scale: float = 0.8


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    tracking_uri: str = ""  # empty: a local SQLite store in the run folder
    experiment: str = "cryokit"
    run_name: str = ""


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    patch: PatchConfig = field(default_factory=PatchConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# The fields that must change together when switching model family (``cryokit train --model NAME``).
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Output stride 2: on held-out randomized runs, with the CPU time stride 1 took spent on 3x the patches,
    # 0.718 weighted F4 against 0.614. Then particle classes weighted by volume (uniform weights let
    # thyroglobulin's large balls outvote beta-galactosidase and apo-ferritin) and maps smoothed by 40 A
    # before peaks are found (0.758), then MONAI's DynUNet, the nnU-Net layout, in place of MONAI's UNet at
    # the same widths (0.837; docs/BENCHMARKS.md, "U-Net experiments (randomized simulator)").
    "unet": {
        "model.name": "dynunet",
        "target.kind": "balls",
        "target.stride": 2,
        "loss.name": "dice_ce",
        "loss.particle_weighting": "volume",
        "postprocess.smooth_sigma_angstrom": 40.0,
    },
    "basicunet": {"model.name": "basicunet", "target.kind": "balls", "target.stride": 1, "loss.name": "dice_ce"},
    "segresnet": {"model.name": "segresnet", "target.kind": "balls", "target.stride": 1, "loss.name": "dice_ce"},
    "flexibleunet": {"model.name": "flexibleunet", "target.kind": "balls", "target.stride": 1, "loss.name": "dice_ce"},
    # Centre sampling (every cell within 1 cell of a centre a positive, up to 7 per particle in place of 1):
    # 0.755 -> 0.777 weighted F4 on held-out randomized runs at the same budget, the mean over two training
    # seeds and three fitting runs. Then a ResNet-18 of half the width (a step a third of the time) on 3x the
    # patches (cryokit.demo.pipeline.DEMO_PATCHES_PER_EPOCH): 0.776 -> 0.830, three seeds against two
    # (docs/BENCHMARKS.md, "Detector variants across seeds and fitting runs"). MedicalNet's weights need 64.
    "yolo3d": {
        "model.name": "yolo3d",
        "model.backbone_width": 32,
        "target.kind": "detection",
        "target.stride": 4,
        "target.positive_radius_cells": 1.0,
        "loss.name": "detection",
        "loss.particle_weighting": "uniform",
        "postprocess.smooth_sigma_angstrom": 0.0,
    },
}


def to_dict(config: Any) -> dict:
    """Nested plain dict (tuples become lists) for JSON, YAML, MLflow and checkpoints."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}
_NAMES[bool] = ("true or false", "true/false values")


def _type_name(annotation: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0], True)}"
        return f"a list of {len(args)} {_type_name(args[0], True)}"
    if origin in (dict, collections.abc.Mapping):
        return f"a mapping of {_type_name(args[0], True)} to {_type_name(args[1], True)}" if args else "a mapping"
    names = _NAMES.get(annotation)
    return names[plural] if names else getattr(annotation, "__name__", str(annotation))


def _scalar(value: Any, annotation: Any, where: str) -> Any:
    """An int, float, str or bool without silent truncation: 2.7 is not an int, true is not 1."""
    wrong = ValueError(f"config key {where!r} takes {_type_name(annotation)}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise wrong
    if isinstance(value, bool) or isinstance(value, (list, tuple, dict)):
        raise wrong
    if annotation is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise wrong from None
        raise wrong
    if annotation is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise wrong from None
        raise wrong
    if annotation is str:
        if isinstance(value, (str, int, float)):
            return str(value)
        raise wrong
    return value


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Coerce a JSON/YAML/CLI value to a field's annotated type, or raise naming the key and what it takes."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, prefix=f"{where}.")
    if origin is tuple:
        variable = len(args) == 2 and args[1] is Ellipsis
        if isinstance(value, str) and variable and args[0] is str:
            value = [value]  # a bare name where a list of names is expected: a list of one
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {where!r} takes {_type_name(annotation)}, got {value!r}")
        if not variable and len(value) != len(args):
            raise ValueError(
                f"config key {where!r} takes {_type_name(annotation)}, got {len(value)} value(s): {list(value)!r}"
            )
        kinds = [args[0]] * len(value) if variable else list(args)
        return tuple(_convert(v, kind, f"{where}[{i}]") for i, (v, kind) in enumerate(zip(value, kinds)))
    if origin in (dict, collections.abc.Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"config key {where!r} takes {_type_name(annotation)}, got {value!r}")
        if len(args) == 2:
            return {_convert(k, args[0], where): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    return _scalar(value, annotation, where)


def config_differences(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in a, value in b)`` for every field where two configurations differ."""

    def leaves(config: Any, prefix: str = "") -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if dataclasses.is_dataclass(value):
                flat.update(leaves(value, f"{prefix}{item.name}."))
            else:
                flat[prefix + item.name] = json.loads(json.dumps(value))  # tuples as lists, as stored
        return flat

    left, right = leaves(a), leaves(b)
    return [(key, left[key], right[key]) for key in left if left[key] != right[key]]


def from_dict(cls: type, values: Mapping[str, Any] | None, prefix: str = "") -> Any:
    """Build ``cls`` from a (nested) mapping; unknown keys raise ValueError naming them."""
    if values is not None and not isinstance(values, Mapping):
        raise ValueError(
            f"config key {prefix.rstrip('.') or cls.__name__!r} must be a mapping of its fields, got {values!r}"
        )
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known keys of {prefix.rstrip('.') or cls.__name__}: {', '.join(sorted(names))}"
        )
    return cls(**{k: _convert(v, hints[k], prefix + k) for k, v in values.items()})


def read_config_file(path: str | Path) -> dict:
    """The mapping a YAML or JSON config file holds (not yet checked against ``RunConfig``)."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as error:  # yaml and json raise different types
        raise ValueError(f"config file {path} cannot be parsed: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(values).__name__}")
    return values


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), base: RunConfig | None = None
) -> RunConfig:
    """A ``RunConfig`` from a YAML or JSON file (or the defaults), then ``key.sub=value`` overrides.

    ``base`` (default: the defaults) is the configuration the file and the overrides change.
    """
    values = read_config_file(path) if path is not None else {}
    start = to_dict(base) if base is not None else {}
    return from_dict(RunConfig, _merge(_merge(start, values), _parse_overrides(overrides)))


def _parse_overrides(overrides: Sequence[str]) -> dict:
    """``["train.lr=1e-3", "data.val_runs=[TS_1]"]`` -> nested dict; values parsed as YAML."""
    import yaml

    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return nested


def _merge(base: dict, update: Mapping) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def apply_overrides(config: RunConfig, overrides: Mapping[str, Any] | Sequence[str]) -> RunConfig:
    """A copy of ``config`` with ``{"train.lr": 1e-3}`` or ``["train.lr=1e-3"]`` applied."""
    if isinstance(overrides, Mapping):
        overrides = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return from_dict(RunConfig, _merge(to_dict(config), _parse_overrides(overrides)))


def replace(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` re-exported so notebooks need one import."""
    return dataclasses.replace(config, **changes)
