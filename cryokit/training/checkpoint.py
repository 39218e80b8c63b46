"""Self-describing checkpoints, written atomically, and loading a trained model back.

A checkpoint holds the model weights (and the EMA weights when used), optimiser, scheduler and
scaler states, epoch, step, best score, the validation history, the RNG states and the full run
configuration, so ``load_model`` rebuilds the network without any other file and ``--resume``
continues exactly where a run stopped.
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
]

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
    weights = state.get("ema") or state["model"]
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
        catalog,
    )


def checkpoint_catalog(state: dict[str, Any], path: str | Path) -> ParticleCatalog:
    """The particle catalog a checkpoint was trained on (stored as plain records; older checkpoints hold
    none and were trained on the competition's six)."""
    records = state.get("catalog")
    if not records:
        return COMPETITION_CATALOG
    return ParticleCatalog.from_records(records, str(state.get("catalog_source") or path))
