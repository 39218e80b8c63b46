"""Self-describing checkpoints, written atomically, and loading a trained model back.

A checkpoint holds the model weights (and the EMA weights when used), optimiser, scheduler and
scaler states, epoch, step, best score, the validation history, the tuned thresholds and the
validation table they were tuned with, the RNG states and the full run configuration, so
``load_model`` rebuilds the network without any other file and ``--resume`` continues exactly where
a run stopped.

Checkpoints are shared files (Kaggle datasets, colleagues), so they are data: everything in one is a
tensor or a plain ``dict``/``list``/``tuple``/``str``/``int``/``float``/``bool``/``None``, and
``load_checkpoint`` reads with ``torch.load(weights_only=True)``, which never runs code from the file.
A file that needs more (a pickle that calls a function: a crafted file, or a checkpoint of an older
cryokit that stored NumPy RNG states) is refused as "not a cryokit checkpoint". For a *trusted* legacy
file there is one explicit opt-in: ``load_checkpoint(path, trusted_legacy=True)`` or the environment
variable ``CRYOKIT_TRUSTED_LEGACY_CHECKPOINTS=1``; re-save it with ``save_checkpoint`` to drop the need.

``export_inference_checkpoint`` writes the inference-only copy (weights, configuration, thresholds;
optionally fp16, or int8 convolution kernels with one fp32 scale per output channel) that ``cryokit
export`` and ``kaggle bundle`` ship; ``stored_weights`` turns any of them back into fp32 weights.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cryokit.config import RunConfig, from_dict
from cryokit.io.atomic import atomic_path
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

if TYPE_CHECKING:
    from cryokit.inference.sliding_window import SlidingWindow
    from cryokit.tasks import Task

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "LoadedModel",
    "init_from_checkpoint",
    "weight_mismatches",
    "check_weights",
    "TRUSTED_LEGACY_ENV",
    "export_inference_checkpoint",
    "stored_weights",
    "WEIGHT_DTYPES",
]

FORMAT_VERSION = 2  # 2: plain data only (loads with weights_only=True); 1: NumPy objects inside
TRUSTED_LEGACY_ENV = "CRYOKIT_TRUSTED_LEGACY_CHECKPOINTS"


def _plain(value: Any, where: str) -> Any:
    """``value`` as tensors and plain containers (NumPy scalars and arrays converted); raise otherwise."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return type(value)((key, _plain(item, f"{where}.{key}")) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}: store tensors or plain values only")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` under a temporary name, then rename: an interrupted save never corrupts ``path``.

    ``state`` may hold tensors and plain values (NumPy scalars and arrays are converted); anything else
    raises, so that every checkpoint loads with ``weights_only=True``.
    """
    buffer = io.BytesIO()
    torch.save(_plain({**state, "format_version": FORMAT_VERSION}, "state"), buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", trusted_legacy: bool | None = None
) -> dict[str, Any]:
    """Read a cryokit checkpoint without running code from it (``torch.load(weights_only=True)``).

    Args:
        path: the ``.pt`` file.
        map_location: where tensors go.
        trusted_legacy: also unpickle arbitrary objects. Only for a file you trust (it can run code);
            None reads the environment variable ``CRYOKIT_TRUSTED_LEGACY_CHECKPOINTS`` (``1`` = yes).

    Raises:
        FileNotFoundError: no such file. ValueError: ``"PATH is not a cryokit checkpoint: why"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if trusted_legacy is None:
        trusted_legacy = os.environ.get(TRUSTED_LEGACY_ENV, "") == "1"
    try:
        state = torch.load(path, map_location=map_location, weights_only=not trusted_legacy)
    except Exception as error:  # torch raises many types for a damaged or unsafe file
        text = str(error)
        if "GLOBAL " in text:  # a pickled reference to a function or class: code would run
            raise ValueError(
                f"{path} is not a cryokit checkpoint: it holds pickled objects beyond tensors and plain values "
                f"({_unsupported(text)}), and loading it could run code. If it is a checkpoint of an older "
                f"cryokit that you trust, load it once with {TRUSTED_LEGACY_ENV}=1 and re-save it"
            ) from None
        reason = _unsupported(text) if "Weights only load failed" in text else f"{type(error).__name__}: {error}"
        raise ValueError(f"{path} is not a cryokit checkpoint: cannot be read ({reason})") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a cryokit checkpoint: no 'config' and 'model' entries")
    if not isinstance(state["config"], dict):
        raise ValueError(f"{path} is not a cryokit checkpoint: its 'config' is a {type(state['config']).__name__}")
    return state


def _unsupported(text: str) -> str:
    """The reason in torch's weights_only message, e.g. "unsupported GLOBAL posix.system", "Unsupported operand 110"."""
    lines = [line.strip() for line in text.splitlines()]
    for marker in ("GLOBAL ", "Unsupported"):
        for line in lines:
            if marker in line:
                return line.rstrip(".")[:200]
    return "unsupported object"


def weight_mismatches(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Why ``weights`` cannot load into ``model``, one line per tensor: missing, unexpected, or of another shape."""
    own = model.state_dict()
    lines = [f"{name}: missing from the checkpoint" for name in own if name not in weights]
    lines += [f"{name}: not in the model" for name in weights if name not in own]
    lines += [
        f"{name}: checkpoint {tuple(weights[name].shape)}, model {tuple(tensor.shape)}"
        for name, tensor in own.items()
        if name in weights and tuple(weights[name].shape) != tuple(tensor.shape)
    ]
    return lines


def init_from_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Start ``model`` from the weights of checkpoint ``path`` (its EMA weights when it has them): the
    pretrain-then-fine-tune recipe. Only the weights come over (no optimiser, epoch or thresholds), and
    every tensor must match by name and shape; otherwise a ValueError names the file and the tensors."""
    state = load_checkpoint(path)
    weights = stored_weights(state, path)
    problems = weight_mismatches(model, weights)
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(
            f"cannot initialise from {path}: its weights do not fit this model (same model.* settings "
            f"and target.stride as the checkpoint's are needed):\n  {shown}"
        )
    model.load_state_dict(weights)
    return model


@dataclass
class LoadedModel:
    """A trained network ready for inference, with everything prediction needs from its configuration.

    Attributes:
        model: the network in eval mode. task: its ``cryokit.tasks`` task (loss, dense maps, decoder).
        window: the sliding windows it was validated with.
        tomo_type, level: the tomograms it reads. amp: mixed precision on CUDA, as trained.
        thresholds: per-class thresholds tuned on its validation runs; default_threshold for the others.
        merge_radius_fraction: clustering radius (share of the class radius) when merged with other kinds.
        voxel_spacing_angstrom_zyx: the spacing it was trained at. path: the checkpoint file.
        config: its whole run configuration (for manifests and reports).
        catalog: the particles of its output channels (checkpoints without one: the competition's six).
    """

    model: nn.Module
    task: Task
    window: SlidingWindow
    tomo_type: str
    level: int
    amp: bool
    thresholds: dict[str, float]
    default_threshold: float
    merge_radius_fraction: float
    voxel_spacing_angstrom_zyx: list[float]
    path: Path
    config: RunConfig
    catalog: ParticleCatalog = COMPETITION_CATALOG


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedModel:
    """Rebuild the network of a checkpoint (EMA weights when present and ``use_ema``) in eval mode."""
    from cryokit.models.build import build_model_and_task, sliding_window

    state = load_checkpoint(path)
    config = from_dict(RunConfig, state["config"])
    spacing = state["voxel_spacing_angstrom_zyx"]
    catalog = checkpoint_catalog(state, path)
    model, task = build_model_and_task(config, spacing, catalog)
    weights = stored_weights(state, path, use_ema)
    check_weights(model, weights, path)
    model.load_state_dict(weights)
    model.to(device).eval()
    return LoadedModel(
        model,
        task,
        sliding_window(config.patch),
        config.data.tomo_type,
        config.data.level,
        config.train.amp,
        dict(state.get("thresholds") or {}),
        config.postprocess.default_threshold,
        config.postprocess.radius_fraction,
        spacing,
        Path(path),
        config,
        catalog,
    )


def checkpoint_catalog(state: dict[str, Any], path: str | Path) -> ParticleCatalog:
    """The particle catalog a checkpoint was trained on (stored as plain records; older checkpoints hold
    none and were trained on the competition's six)."""
    records = state.get("catalog")
    if not records:
        return COMPETITION_CATALOG
    return ParticleCatalog.from_records(records, str(state.get("catalog_source") or path))


def check_weights(model: nn.Module, weights: dict[str, Any], path: str | Path) -> None:
    """Raise naming ``path`` and the first tensor whose name or shape differs from ``model``'s."""
    problems = weight_mismatches(model, weights)
    if problems:
        raise ValueError(
            f"checkpoint {path}: its weights do not match its configuration: {problems[0]} "
            f"({len(problems)} tensor(s) differ from the network its stored config builds)"
        )


def _plain_record(value: Any, where: str) -> Any:
    """``value`` as plain dict/list/str/int/float/bool/None (tuples become lists); anything else raises."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):  # numpy scalars too, through their Python types
        return type(value)(value) if type(value) in (int, float) else value.item()
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain_record(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_record(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where} holds a {type(value).__name__}, which an inference checkpoint cannot carry")


WEIGHT_DTYPES = ("float32", "float16", "int8", "auto")
# "auto": int8 for networks of at least this many parameters (the 33.5 M-parameter detector on MedicalNet's
# full-width backbone: 134 -> 34 MB for no loss in weighted F4), float16 below (the 0.6 M-parameter U-Net:
# 1.2 MB, where int8 would save 0.6 MB and cost 0.001 to 0.005 in two measurements; the preset's half-width
# detector, 8.7 M: 17 MB); docs/BENCHMARKS.md, "Inference precision quality".
AUTO_INT8_MIN_PARAMETERS = 10_000_000
# int8 export: tensors of at least this many values and 2+ dimensions (convolution kernels) are quantised;
# biases and batch-norm statistics (a few hundred values each) stay in fp16.
_INT8_MIN_VALUES = 256


def _quantise_int8(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one fp32 scale per slice of dim 0 (a kernel's output channel): w ~ q * scale."""
    flat = tensor.float().reshape(tensor.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
    quantised = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
    return quantised, scale


def stored_weights(state: dict[str, Any], path: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The weights a loaded checkpoint holds (EMA ones when present and ``use_ema``), int8 tensors of an
    int8 export dequantised to fp32 with their scales; fp16 tensors are cast when loaded into a model."""
    weights = state.get("ema") if use_ema and state.get("ema") else state["model"]
    scales = state.get("int8_scales") or {}
    if not scales:
        return weights
    if not isinstance(scales, dict):
        raise ValueError(f"checkpoint {path}: its 'int8_scales' is a {type(scales).__name__}, not a mapping")
    weights = dict(weights)
    for name, tensor in list(weights.items()):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.int8:
            continue
        scale = scales.get(name)
        if not isinstance(scale, torch.Tensor) or scale.shape != (tensor.shape[0],):
            found = "none" if scale is None else f"shape {tuple(getattr(scale, 'shape', ()))}"
            raise ValueError(
                f"checkpoint {path}: int8 weight {name!r} {tuple(tensor.shape)} needs a scale of shape "
                f"({tensor.shape[0]},) in 'int8_scales', found {found}"
            )
        weights[name] = tensor.float() * scale.float().reshape(-1, *([1] * (tensor.ndim - 1)))
    return weights


def export_inference_checkpoint(checkpoint: str | Path, out: str | Path, dtype: str = "float32") -> dict[str, Any]:
    """Write an inference-only copy of a training checkpoint: weights, configuration and thresholds.

    The weights are the EMA weights when the checkpoint has them (what ``load_model`` uses), else the
    model's; optimiser, scheduler, scaler, RNG states and history are left out. The file holds only
    tensors and plain dict/list/str/int/float/bool/None, so it loads with
    ``torch.load(weights_only=True)``; ``load_model`` reads it like any checkpoint.

    Args:
        checkpoint: a cryokit training checkpoint.
        out: the file to write (atomically).
        dtype: how floating-point weights are stored: ``"float32"``; ``"float16"`` (half the size;
            ``load_model`` casts them back to the network's fp32 parameters, so the rounding is all that
            changes); ``"int8"`` (about a quarter: convolution kernels as int8 with one fp32 scale per
            output channel, the rest fp16; ``load_model`` dequantises them); ``"auto"``: int8 for a network
            of at least ``AUTO_INT8_MIN_PARAMETERS`` parameters, float16 for a smaller one.

    Returns:
        ``{"source_bytes", "bytes", "weights" ("ema" or "model"), "dtype"}`` (``dtype`` as stored: never "auto").
    """
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"dtype must be one of {WEIGHT_DTYPES}, got {dtype!r}")
    state = load_checkpoint(checkpoint)
    use_ema = bool(state.get("ema"))
    weights = stored_weights(state, checkpoint)
    if dtype == "auto":
        parameters = sum(t.numel() for t in weights.values() if isinstance(t, torch.Tensor) and t.is_floating_point())
        dtype = "int8" if parameters >= AUTO_INT8_MIN_PARAMETERS else "float16"
    tensors, scales = {}, {}
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"checkpoint {checkpoint}: weight {name!r} is a {type(tensor).__name__}, not a tensor")
        name, tensor = str(name), tensor.detach().cpu()
        if not tensor.is_floating_point() or dtype == "float32":
            tensors[name] = tensor.clone()
        elif dtype == "int8" and tensor.ndim >= 2 and tensor.numel() >= _INT8_MIN_VALUES:
            tensors[name], scales[name] = _quantise_int8(tensor)
        else:
            tensors[name] = tensor.half().clone()
    exported = {
        "inference_only": True,
        "model": tensors,
        "ema": None,
        "weights": "ema" if use_ema else "model",
        "weights_dtype": dtype,
        "config": _plain_record(state["config"], "config"),
        "thresholds": {str(k): float(v) for k, v in (state.get("thresholds") or {}).items()},
        "voxel_spacing_angstrom_zyx": [float(v) for v in state["voxel_spacing_angstrom_zyx"]],
        "source": Path(checkpoint).name,
    }
    if scales:
        exported["int8_scales"] = scales
    for key in ("catalog", "catalog_source"):  # the particles it was trained on (a copick project's)
        if state.get(key):
            exported[key] = _plain_record(state[key], key)
    path = save_checkpoint(out, exported)
    return {
        "source_bytes": Path(checkpoint).stat().st_size,
        "bytes": path.stat().st_size,
        "weights": exported["weights"],
        "dtype": dtype,
    }
