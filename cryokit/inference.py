"""Whole-tomogram inference: sliding windows, test-time augmentation, ensembles, picks.

``predict_maps`` runs one model over a normalised (Z, Y, X) volume with MONAI's sliding-window
inferer (through ``cryokit.patching.predict_tomogram``) and averages the maps of the chosen
test-time transforms (flips, 90 degree turns in the XY plane). Each transform is undone on the maps,
and on a task's vector channels (the detector's offsets) as well, so every transform's maps line up
with the tomogram before they are averaged. ``predict_picks`` averages the maps of several models of
one task, decodes once and returns scored picks in Angstrom. Speed switches (channels-last, compile,
CPU bf16, the volume kept on the GPU) are ``cryokit.inference_speed.InferenceOptions``, with their
measured effects.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cryokit.config import PatchConfig, PostprocessConfig
from cryokit.inference_speed import InferenceOptions, prepare_for_inference
from cryokit.patching import predict_tomogram

__all__ = [
    "TTA_CHOICES",
    "tta_transforms",
    "resolve_device",
    "native_bf16",
    "autocast",
    "predict_maps",
    "predict_volume_picks",
    "predict_runs",
    "Timer",
    "ensemble_groups",
    "predict_run",
]

log = logging.getLogger(__name__)

TTA_CHOICES = ("none", "flips", "flips+rot90")


@dataclass(frozen=True)
class _Transform:
    """Flip some of the axes (0 = z, 1 = y, 2 = x) of a (Z, Y, X) grid, then turn ``k`` times by 90
    degrees in the (y, x) plane (``torch.rot90`` over dims (1, 2))."""

    flips: tuple[int, ...] = ()
    turns: int = 0

    def apply(self, grid: torch.Tensor) -> torch.Tensor:
        """(..., Z, Y, X) -> transformed grid."""
        if self.flips:
            grid = grid.flip([a - 3 for a in self.flips])
        return torch.rot90(grid, self.turns, dims=(-2, -1)) if self.turns else grid

    def undo(self, maps: torch.Tensor, vector_channels: Sequence[Sequence[int]]) -> torch.Tensor:
        """(C, z, y, x) maps of the transformed grid -> maps in the original frame, vectors included."""
        maps = torch.rot90(maps, -self.turns, dims=(-2, -1)) if self.turns else maps
        maps = maps.flip([a - 3 for a in self.flips]) if self.flips else maps
        if vector_channels:
            maps = maps.clone()
            for cz, cy, cx in vector_channels:
                dy, dx = maps[cy].clone(), maps[cx].clone()
                # rot90 by k maps (y, x) displacements like the grid; undo by turning them back.
                for _ in range(self.turns % 4):
                    dy, dx = dx, -dy
                maps[cy], maps[cx] = dy, dx
                for axis in self.flips:
                    channel = (cz, cy, cx)[axis]
                    maps[channel] = -maps[channel]
        return maps


def tta_transforms(tta: str) -> list[_Transform]:
    """The transforms of a TTA choice: "none" (1), "flips" (8 axis-flip combinations), "flips+rot90" (16)."""
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta must be one of {TTA_CHOICES}, got {tta!r}")
    if tta == "none":
        return [_Transform()]
    flips = [tuple(a for a in range(3) if mask >> a & 1) for mask in range(8)]
    turns = (0, 1) if tta == "flips+rot90" else (0,)
    return [_Transform(f, k) for k in turns for f in flips]


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" picks CUDA when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False):
    """bf16 autocast on CUDA when supported (else fp16); on CPU nothing, or bf16 with ``cpu_bf16``."""
    if enabled and cpu_bf16 and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if native_bf16() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later). A T4 only emulates it, slowly, yet ``is_bf16_supported()``
    says True there by default: ask without emulation (older torch has no such argument)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())


@torch.no_grad()
def predict_maps(
    model: nn.Module,
    dense_maps: Callable,
    volume_zyx: np.ndarray | torch.Tensor,
    patch: PatchConfig,
    output_stride: int = 1,
    vector_channels: Sequence[Sequence[int]] = (),
    tta: str = "none",
    device: torch.device | str = "cpu",
    amp: bool = True,
    options: InferenceOptions | None = None,
) -> torch.Tensor:
    """(K, ceil(Z/s), ceil(Y/s), ceil(X/s)) maps of one model over a normalised volume, TTA-averaged.

    Args:
        model: network in eval mode on ``device``.
        dense_maps: the task's ``dense_maps``: network output -> (B, K, z, y, x) maps to blend.
        volume_zyx: (Z, Y, X) normalised volume; the maps are stitched where it lies (a tensor on the
            GPU keeps windows and stitching there, an array or CPU tensor stitches on the CPU).
        patch: window size, overlap and batch size (``size_zyx``, ``inference_overlap``, ``inference_batch_size``).
            Per window on 2 CPU cores, against batch 2: batch 1 0.64-1.09x, batch 4 0.88-1.09x (no gain).
        output_stride: the network's output stride.
        vector_channels: channel triples (z, y, x) holding displacements, transformed with the grid.
        tta: one of ``TTA_CHOICES``; "flips" costs 8 passes (network and stitching; measured 6-10x on
            a noisy machine), "flips+rot90" 16.
        options: speed switches (``cryokit.inference_speed.InferenceOptions``; None: the defaults).
            ``channels_last`` converts ``model``'s weights in place (their values do not change).
    """
    device, options = torch.device(device), options or InferenceOptions()
    if isinstance(volume_zyx, torch.Tensor):
        volume = volume_zyx.float()
    else:
        volume = torch.as_tensor(np.asarray(volume_zyx), dtype=torch.float32)
    shape = volume.shape
    # Pad the high end to whole cells first, so a flipped grid's cells are the original cells.
    padded = [math.ceil(n / output_stride) * output_stride for n in shape]
    pad = [p for n, m in zip(reversed(shape), reversed(padded)) for p in (0, m - n)]
    volume = F.pad(volume[None, None], pad, mode="replicate")[0, 0] if any(pad) else volume

    if options.channels_last:
        model.to(memory_format=torch.channels_last_3d)

    def run_windows(windows: torch.Tensor) -> torch.Tensor:
        windows = windows.to(device)
        if options.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        with autocast(device, amp, options.cpu_bf16):
            return dense_maps(model(windows)).float()

    transforms = tta_transforms(tta)
    total = None
    for transform in transforms:
        maps = predict_tomogram(
            run_windows,
            transform.apply(volume),
            patch.size_zyx,
            patch.inference_overlap,
            patch.inference_batch_size,
            output_stride,
            sw_device=device,
            device=volume.device,
        )
        maps = transform.undo(maps, vector_channels)
        total = maps if total is None else total + maps
    cells = tuple(math.ceil(n / output_stride) for n in shape)
    return (total / len(transforms))[(slice(None), *(slice(0, c) for c in cells))]


def predict_volume_picks(
    models: Iterable[nn.Module],
    task,
    volume_zyx: np.ndarray | torch.Tensor,
    voxel_spacing_angstrom_zyx,
    run: str,
    patch: PatchConfig,
    post: PostprocessConfig,
    tta: str = "none",
    device: torch.device | str = "cpu",
    amp: bool = True,
    options: InferenceOptions | None = None,
) -> pd.DataFrame:
    """Scored candidate picks of one volume from the average maps of ``models`` (one task)."""
    total, count = None, 0
    for model in models:
        maps = predict_maps(
            model,
            task.dense_maps,
            volume_zyx,
            patch,
            task.output_stride,
            task.vector_channels,
            tta,
            device,
            amp,
            options,
        )
        total, count = (maps if total is None else total + maps), count + 1
    if count == 0:
        raise ValueError("predict_volume_picks needs at least one model")
    return task.decode((total / count).cpu().numpy(), voxel_spacing_angstrom_zyx, run, post)


class Timer:
    """Seconds of a ``with`` block, in ``.seconds``."""

    def __enter__(self):
        self._start, self.seconds = time.perf_counter(), 0.0
        return self

    def __exit__(self, *_):
        self.seconds = time.perf_counter() - self._start


def _ensemble_key(loaded) -> tuple:
    """Checkpoints whose maps can be averaged: same task family, output stride and data level/type."""
    cfg = loaded.config
    return (
        type(loaded.task).__name__,
        getattr(loaded.task, "kind", "detection"),
        loaded.task.output_stride,
        cfg.data.level,
        cfg.data.tomo_type,
    )


def predict_runs(
    checkpoints: Sequence[str],
    root: str,
    split: str = "test",
    runs: Sequence[str] | None = None,
    tta: str = "none",
    thresholds: dict[str, float] | None = None,
    device: str = "auto",
    progress: bool = True,
    keep_scores: bool = False,
    on_error: str = "raise",
    options: InferenceOptions | None = None,
) -> tuple[pd.DataFrame, list[float]]:
    """Picks of every run of a split from one or more checkpoints, and the seconds each run took.

    Checkpoints of one kind (same task, stride, level, tomo type) are averaged map by map; groups of
    different kinds are merged pick by pick (``cryokit.postprocess.merge_picks``). Picks are kept where
    their score reaches the class threshold: ``thresholds`` if given, else the first checkpoint's tuned
    thresholds, else its ``postprocess.default_threshold``.

    With ``on_error="skip"`` a run that fails to load or predict is logged and left out, the others go
    on, and ``picks.attrs["failed_runs"]`` maps each such run to its error; "raise" stops at the first.
    ``options`` (``cryokit.inference_speed.InferenceOptions``) are applied to every model once, here.
    """
    from tqdm.auto import tqdm

    from cryokit.checkpoint import load_model
    from cryokit.io import list_runs

    if not checkpoints:
        raise ValueError("predict needs at least one checkpoint")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    torch_device = resolve_device(device)
    loaded = [load_model(path, torch_device) for path in checkpoints]
    options = options or InferenceOptions()
    for item in loaded:
        item.model = prepare_for_inference(item.model, options)
    groups = ensemble_groups(loaded)
    runs = list(runs) if runs is not None else list_runs(root, split)
    frames, seconds, failed = [], [], {}
    for run in tqdm(runs, desc="predict", disable=not progress):
        with Timer() as timer:
            try:
                frames.append(
                    predict_run(
                        groups,
                        root,
                        split,
                        run,
                        tta,
                        thresholds,
                        torch_device,
                        keep_scores=keep_scores,
                        options=options,
                    )
                )
            except Exception as error:  # noqa: BLE001 -- a damaged tomogram must not stop the others
                if on_error == "raise":
                    raise
                failed[run] = f"{type(error).__name__}: {error}"
                log.error("%s: skipped (%s)", run, failed[run])
        seconds.append(timer.seconds)
        if run not in failed:
            log.info("%s: %d picks in %.1f s", run, len(frames[-1]), timer.seconds)
    from cryokit.postprocess import empty_scored_picks

    picks = pd.concat(frames, ignore_index=True) if frames else empty_scored_picks()
    picks.attrs["failed_runs"] = failed
    return picks, seconds


def ensemble_groups(loaded: Sequence) -> list[list]:
    """Loaded checkpoints (``cryokit.checkpoint.LoadedModel``) grouped by kind, in first-seen order.

    Members of one group (same task, output stride, data level and tomo type) have their maps averaged;
    groups are merged pick by pick. The first group starts with ``loaded[0]``.
    """
    groups: dict[tuple, list] = {}
    for item in loaded:
        groups.setdefault(_ensemble_key(item), []).append(item)
    return list(groups.values())


def predict_run(
    groups: Sequence[Sequence],
    root: str,
    split: str,
    run: str,
    tta: str = "none",
    thresholds: dict[str, float] | None = None,
    device: torch.device | str = "cpu",
    amp: bool | None = None,
    keep_scores: bool = False,
    options: InferenceOptions | None = None,
) -> pd.DataFrame:
    """Picks of one run from ensemble ``groups`` (``ensemble_groups``); the body of ``predict_runs``.

    Args:
        groups: lists of loaded checkpoints; the first member of the first group sets thresholds defaults.
        tta: one of ``TTA_CHOICES``.
        thresholds: per-class thresholds; None uses the first checkpoint's tuned thresholds, and classes
            missing from either use its ``postprocess.default_threshold``.
        amp: mixed precision on CUDA; None follows each checkpoint's ``train.amp``.
        keep_scores: return every candidate with its score instead of thresholding.
        options: speed switches; by default the tomogram is normalised on a GPU ``device`` and stays there.
    """
    from cryokit.io import open_run_tomogram
    from cryokit.patching import normalise_tomogram, normalise_tomogram_on
    from cryokit.postprocess import merge_picks
    from cryokit.tasks import apply_thresholds

    if not groups or not groups[0]:
        raise ValueError("predict_run needs at least one loaded checkpoint")
    first, options = groups[0][0], options or InferenceOptions()
    per_group = []
    for members in groups:
        cfg = members[0].config
        tomogram = open_run_tomogram(root, split, run, cfg.data.tomo_type, cfg.data.level)
        on_device = options.volume_on_device and torch.device(device).type != "cpu"
        volume = normalise_tomogram_on(tomogram, device) if on_device else normalise_tomogram(tomogram)
        per_group.append(
            predict_volume_picks(
                [m.model for m in members],
                members[0].task,
                volume,
                tomogram.voxel_spacing_angstrom_zyx,
                run,
                cfg.patch,
                cfg.postprocess,
                tta,
                device,
                cfg.train.amp if amp is None else amp,
                options,
            )
        )
    post = first.config.postprocess
    picks = per_group[0] if len(per_group) == 1 else merge_picks(per_group, post.radius_fraction)
    if keep_scores:
        return picks
    return apply_thresholds(picks, thresholds if thresholds is not None else first.thresholds, post.default_threshold)
