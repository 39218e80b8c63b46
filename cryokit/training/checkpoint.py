"""Self-describing checkpoints, written atomically, and loading a trained model back.

A checkpoint holds the model weights (and the EMA weights when used), optimiser, scheduler and
scaler states, epoch, step, best score, the validation history, the RNG states and the full run
configuration, so ``load_model`` rebuilds the network without any other file and ``--resume``
continues exactly where a run stopped. ``export_inference_checkpoint`` writes the inference-only
copy (weights, configuration, thresholds; optionally fp16) that ``cryokit export`` and ``kaggle bundle``
ship.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cryokit.config import RunConfig, from_dict
from cryokit.io.atomic import atomic_path

if TYPE_CHECKING:
    from cryokit.inference.sliding_window import SlidingWindow
    from cryokit.tasks import Task

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "LoadedModel", "export_inference_checkpoint"]

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` under a temporary name, then rename: an interrupted save never corrupts ``path``."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a cryokit checkpoint; raises naming the file if it is missing, unreadable or not ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a cryokit checkpoint (no 'config' and 'model' entries)")
    return state


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


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedModel:
    """Rebuild the network of a checkpoint (EMA weights when present and ``use_ema``) in eval mode."""
    from cryokit.models.build import build_model_and_task, sliding_window

    state = load_checkpoint(path)
    config = from_dict(RunConfig, state["config"])
    spacing = state["voxel_spacing_angstrom_zyx"]
    model, task = build_model_and_task(config, spacing)
    weights = state.get("ema") if use_ema and state.get("ema") else state["model"]
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
    )


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain dict/list/str/int/float/bool/None (tuples become lists); anything else raises."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):  # numpy scalars too, through their Python types
        return type(value)(value) if type(value) in (int, float) else value.item()
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where} holds a {type(value).__name__}, which an inference checkpoint cannot carry")


def export_inference_checkpoint(checkpoint: str | Path, out: str | Path, half: bool = False) -> dict[str, Any]:
    """Write an inference-only copy of a training checkpoint: weights, configuration and thresholds.

    The weights are the EMA weights when the checkpoint has them (what ``load_model`` uses), else the
    model's; optimiser, scheduler, scaler, RNG states and history are left out. The file holds only
    tensors and plain dict/list/str/int/float/bool/None, so it loads with
    ``torch.load(weights_only=True)``; ``load_model`` reads it like any checkpoint.

    Args:
        checkpoint: a cryokit training checkpoint.
        out: the file to write (atomically).
        half: floating-point weights in fp16 (half the size; ``load_model`` casts them back to the
            network's fp32 parameters, so the rounding is all that changes).

    Returns:
        ``{"source_bytes", "bytes", "weights" ("ema" or "model"), "dtype" ("float16" or "float32")}``.
    """
    state = load_checkpoint(checkpoint)
    use_ema = bool(state.get("ema"))
    weights = state["ema"] if use_ema else state["model"]
    tensors = {}
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"checkpoint {checkpoint}: weight {name!r} is a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().cpu()
        tensors[str(name)] = (tensor.half() if half and tensor.is_floating_point() else tensor).clone()
    exported = {
        "inference_only": True,
        "model": tensors,
        "ema": None,
        "weights": "ema" if use_ema else "model",
        "config": _plain(state["config"], "config"),
        "thresholds": {str(k): float(v) for k, v in (state.get("thresholds") or {}).items()},
        "voxel_spacing_angstrom_zyx": [float(v) for v in state["voxel_spacing_angstrom_zyx"]],
        "source": Path(checkpoint).name,
    }
    path = save_checkpoint(out, exported)
    return {
        "source_bytes": Path(checkpoint).stat().st_size,
        "bytes": path.stat().st_size,
        "weights": exported["weights"],
        "dtype": "float16" if half else "float32",
    }
