"""Self-describing checkpoints, written atomically, and loading a trained model back.

A checkpoint holds the model weights (and the EMA weights when used), optimiser, scheduler and
scaler states, epoch, step, best score, the validation history, the RNG states and the full run
configuration, so ``load_model`` rebuilds the network without any other file and ``--resume``
continues exactly where a run stopped.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cryokit.config import RunConfig, from_dict
from cryokit.io.atomic import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "LoadedModel"]

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


class LoadedModel:
    """A trained network ready for inference, with its task, configuration and tuned thresholds."""

    def __init__(
        self,
        model: nn.Module,
        task,
        config: RunConfig,
        thresholds: dict[str, float],
        voxel_spacing_angstrom_zyx,
        path: Path,
    ):
        self.model, self.task, self.config, self.thresholds = model, task, config, thresholds
        self.voxel_spacing_angstrom_zyx, self.path = voxel_spacing_angstrom_zyx, path


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> LoadedModel:
    """Rebuild the network of a checkpoint (EMA weights when present and ``use_ema``) in eval mode."""
    from cryokit.models.build import build_model_and_task

    state = load_checkpoint(path)
    config = from_dict(RunConfig, state["config"])
    spacing = state["voxel_spacing_angstrom_zyx"]
    model, task = build_model_and_task(config, spacing)
    weights = state.get("ema") if use_ema and state.get("ema") else state["model"]
    model.load_state_dict(weights)
    model.to(device).eval()
    return LoadedModel(model, task, config, dict(state.get("thresholds") or {}), spacing, Path(path))
