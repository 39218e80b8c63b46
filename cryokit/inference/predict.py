"""Whole-tomogram prediction: maps of one model, picks of an ensemble, every run of a split.

``predict_maps`` runs a network over a normalised (Z, Y, X) volume with the sliding-window inferer
(``cryokit.inference.sliding_window``) and averages the maps of the chosen test-time transforms
(``cryokit.inference.tta``). ``predict_volume_picks`` averages the maps of several models of one task,
decodes once and returns scored picks in Angstrom. ``predict_run`` does that for each group of an
ensemble and merges the groups pick by pick; ``predict_each_run`` is the one loop over runs (progress,
timing, a failing run skipped or raised), which ``predict_runs`` and the Kaggle notebook both use.
Speed switches (channels-last, compile, CPU bf16, the volume kept on the GPU) are
``cryokit.inference.speed.InferenceOptions``, with their measured effects.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryokit.inference.device import autocast_precision, resolve_device, resolve_precision
from cryokit.inference.sliding_window import SlidingWindow, pad_to_stride, sliding_window_maps
from cryokit.inference.speed import InferenceOptions, prepare_for_inference
from cryokit.inference.tta import group_ttas, tta_transforms

if TYPE_CHECKING:
    from cryokit.ensemble import Ensemble
    from cryokit.io.source import DataSource
    from cryokit.particles import ParticleCatalog
    from cryokit.tasks import Task
    from cryokit.training.checkpoint import LoadedModel

__all__ = [
    "predict_maps",
    "predict_volume_picks",
    "Timer",
    "ensemble_groups",
    "group_names",
    "ensemble_mismatch",
    "group_candidates",
    "predict_run",
    "RunResults",
    "predict_each_run",
    "predict_runs",
]

log = logging.getLogger(__name__)


@torch.no_grad()
def predict_maps(
    model: nn.Module,
    dense_maps: Callable,
    volume_zyx: np.ndarray | torch.Tensor,
    window: SlidingWindow,
    output_stride: int = 1,
    vector_channels: Sequence[Sequence[int]] = (),
    tta: str = "none",
    device: torch.device | str = "cpu",
    amp: bool = True,
    options: InferenceOptions | None = None,
    precision: str = "auto",
) -> torch.Tensor:
    """(K, ceil(Z/s), ceil(Y/s), ceil(X/s)) maps of one model over a normalised volume, TTA-averaged.

    Args:
        model: network in eval mode on ``device`` (``prepare_for_inference`` applied once, by the caller).
        dense_maps: the task's ``dense_maps``: network output -> (B, K, z, y, x) maps to blend.
        volume_zyx: (Z, Y, X) normalised volume; the maps are stitched where it lies (a tensor on the
            GPU keeps windows and stitching there, an array or CPU tensor stitches on the CPU).
        window: window size, overlap and windows per batch.
        output_stride: the network's output stride.
        vector_channels: channel triples (z, y, x) holding displacements, transformed with the grid.
        tta: one of ``TTA_CHOICES``; "flips" costs 8 passes (network and stitching; measured 6-10x on
            a noisy machine), "flips+rot90" 16.
        options: speed switches (None: the defaults); windows go channels-last when the model is.
        precision: "fp32", "bf16", "fp16" (autocast to it on any device), or "auto": ``amp`` and
            ``options.cpu_bf16`` decide (``cryokit.inference.device.resolve_precision``).
    """
    device, options = torch.device(device), options or InferenceOptions()
    precision = resolve_precision(precision, device, amp, options.cpu_bf16)
    if isinstance(volume_zyx, torch.Tensor):
        volume = volume_zyx.float()
    else:
        volume = torch.as_tensor(np.asarray(volume_zyx), dtype=torch.float32)
    shape = volume.shape
    # Whole cells first, so a flipped grid's cells are the original cells.
    volume = pad_to_stride(volume, output_stride)

    def run_windows(windows: torch.Tensor) -> torch.Tensor:
        windows = windows.to(device)
        if options.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        with autocast_precision(device, precision):
            return dense_maps(model(windows)).float()

    transforms = tta_transforms(tta)
    total = None
    for transform in transforms:
        maps = sliding_window_maps(
            run_windows, transform.apply(volume), window, output_stride, sw_device=device, device=volume.device
        )
        maps = transform.undo(maps, vector_channels)
        total = maps if total is None else total.add_(maps)  # in place: a level-0 map is 1.75 GB
    cells = tuple(math.ceil(n / output_stride) for n in shape)
    if len(transforms) > 1:
        total /= len(transforms)
    return total[(slice(None), *(slice(0, c) for c in cells))]


def predict_volume_picks(
    models: Iterable[nn.Module],
    task: Task,
    volume_zyx: np.ndarray | torch.Tensor,
    voxel_spacing_angstrom_zyx,
    run: str,
    window: SlidingWindow,
    tta: str = "none",
    device: torch.device | str = "cpu",
    amp: bool = True,
    options: InferenceOptions | None = None,
    precision: str = "auto",
    floors: Mapping[str, float | None] | None = None,
) -> pd.DataFrame:
    """Scored candidate picks of one volume from the average maps of ``models`` (one task).

    ``floors``: the per-class thresholds the caller will apply, when known (``Task.decode`` then returns
    only the picks that pass them, and on the CPU decodes several times faster).
    """
    total, count = None, 0
    for model in models:
        maps = predict_maps(
            model,
            task.dense_maps,
            volume_zyx,
            window,
            task.output_stride,
            task.vector_channels,
            tta,
            device,
            amp,
            options,
            precision,
        )
        total, count = (maps if total is None else total.add_(maps)), count + 1
    if count == 0:
        raise ValueError("predict_volume_picks needs at least one model")
    if count > 1:
        total /= count  # in place, and not at all for one model: each copy of level-0 maps costs about 1 s
    # The maps stay where they are: the task decodes a GPU's maps on the GPU, only the picks come back.
    return task.decode(total, voxel_spacing_angstrom_zyx, run, floors)


class Timer:
    """Seconds of a ``with`` block, in ``.seconds``."""

    def __enter__(self):
        self._start, self.seconds = time.perf_counter(), 0.0
        return self

    def __exit__(self, *_):
        self.seconds = time.perf_counter() - self._start


def _ensemble_key(loaded: LoadedModel) -> tuple:
    """Checkpoints whose maps can be averaged: same task family, output stride and data level/type."""
    task = loaded.task
    return (type(task).__name__, getattr(task, "kind", "detection"), task.output_stride, loaded.level, loaded.tomo_type)


def ensemble_groups(loaded: Sequence[LoadedModel]) -> list[list[LoadedModel]]:
    """Loaded checkpoints grouped by kind, in first-seen order.

    Members of one group (same task, output stride, data level and tomo type) have their maps averaged;
    groups are merged pick by pick. The first group starts with ``loaded[0]``.
    """
    groups: dict[tuple, list] = {}
    for item in loaded:
        groups.setdefault(_ensemble_key(item), []).append(item)
    return list(groups.values())


def group_names(groups: Sequence[Sequence[LoadedModel]]) -> list[str]:
    """One name per group: its checkpoints' paths joined by ``+``."""
    return ["+".join(str(m.path) for m in members) for members in groups]


def group_candidates(
    checkpoints: Sequence[str],
    root: str | DataSource,
    split: str,
    runs: Sequence[str],
    tta: str | Sequence[str] = "none",
    device: str = "auto",
    progress: bool = True,
) -> tuple[list[str], list[pd.DataFrame]]:
    """Every scored candidate of each ensemble group on ``runs`` (what ``cryokit.ensemble.fit_ensemble`` takes).

    ``root`` is a Kaggle root (with ``split``) or any ``DataSource``, whose catalog the checkpoints' must
    match. Each group's frame has ``attrs["seconds"]`` (seconds per run, in ``runs`` order) and
    ``attrs["thresholds"]`` and ``attrs["default_threshold"]`` (its first checkpoint's, which
    ``predict_runs`` would apply alone) and ``attrs["tta"]`` (the group's TTA: ``tta`` is one choice for
    every group or one per group). ``progress``: a tqdm bar per group.
    """
    from tqdm.auto import tqdm

    from cryokit.training.checkpoint import load_model

    torch_device = resolve_device(device)
    loaded = [load_model(path, torch_device) for path in checkpoints]
    check_catalogs(loaded, _as_source(root, split).catalog())
    groups = ensemble_groups(loaded)
    frames = []
    for group, group_tta in zip(groups, group_ttas(tta, len(groups))):
        parts, seconds = [], []
        for run in tqdm(runs, desc=f"candidates (tta {group_tta})", unit="run", disable=not progress):
            start = time.perf_counter()
            parts.append(predict_run([group], root, split, run, group_tta, device=torch_device, keep_scores=True))
            seconds.append(time.perf_counter() - start)
        frame = pd.concat(parts, ignore_index=True)
        frame.attrs.update(
            seconds=seconds,
            thresholds=dict(group[0].thresholds),
            default_threshold=group[0].default_threshold,
            tta=group_tta,
        )
        frames.append(frame)
    return group_names(groups), frames


def predict_run(
    groups: Sequence[Sequence[LoadedModel]],
    root: str | DataSource,
    split: str,
    run: str,
    tta: str | Sequence[str] = "none",
    thresholds: dict[str, float] | None = None,
    device: torch.device | str = "cpu",
    amp: bool | None = None,
    keep_scores: bool = False,
    options: InferenceOptions | None = None,
    ensemble: Ensemble | None = None,
    tomo_type: str | None = None,
    precision: str = "auto",
) -> pd.DataFrame:
    """Picks of one run from ensemble ``groups`` (``ensemble_groups``).

    Args:
        groups: lists of loaded checkpoints; the first member of the first group sets thresholds defaults.
        root: a Kaggle root (with ``split``) or any ``DataSource`` (a copick project; ``split`` unused).
        tta: one of ``TTA_CHOICES`` for every group, or one per group (``group_ttas``).
        thresholds: per-class thresholds; None uses the first checkpoint's tuned thresholds, and classes
            missing from either use its ``default_threshold``.
        amp: mixed precision on CUDA; None follows each checkpoint's training setting.
        keep_scores: return every candidate with its score instead of thresholding.
        options: speed switches; by default the tomogram is normalised on a GPU ``device`` and stays there.
        tomo_type: read this tomogram type instead of the one each checkpoint was trained on.
        ensemble: how to merge the groups (``cryokit.ensemble``: calibrated scores, per-class weights and
            thresholds, which then replace the first checkpoint's); None averages the raw scores.
        precision: one of ``cryokit.inference.device.PRECISIONS``; "auto" follows ``amp``.
    """
    from cryokit.data.normalise import normalise_tomogram, normalise_tomogram_on
    from cryokit.ensemble import ensemble_picks, idle_members
    from cryokit.postprocess import apply_thresholds, empty_scored_picks, merge_picks

    if not groups or not groups[0]:
        raise ValueError("predict_run needs at least one loaded checkpoint")
    first, options = groups[0][0], options or InferenceOptions()
    on_device = options.volume_on_device and torch.device(device).type != "cpu"
    merged = ensemble is not None or len(groups) > 1
    if thresholds is None:
        thresholds = ensemble.thresholds if ensemble is not None else first.thresholds
    # One group's picks are thresholded as they are: decode only what passes (the same picks, sooner).
    # Merged groups need every candidate, since a pick under its threshold still raises a merged score.
    floors = (
        None
        if keep_scores or merged
        else {name: thresholds.get(name, first.default_threshold) for name in first.catalog.names}
    )
    # A group the ensemble gives no weight on any class (a member outside its vote) is not predicted.
    idle = set() if ensemble is None else set(idle_members(ensemble))
    per_group = []
    for index, (members, group_tta) in enumerate(zip(groups, group_ttas(tta, len(groups)))):
        if index in idle:
            per_group.append(empty_scored_picks())
            continue
        lead = members[0]
        tomogram = _as_source(root, split).open_tomogram(run, tomo_type or lead.tomo_type, lead.level)
        volume = normalise_tomogram_on(tomogram, device) if on_device else normalise_tomogram(tomogram)
        per_group.append(
            predict_volume_picks(
                [m.model for m in members],
                lead.task,
                volume,
                tomogram.voxel_spacing_angstrom_zyx,
                run,
                lead.window,
                group_tta,
                device,
                lead.amp if amp is None else amp,
                options,
                precision,
                floors,
            )
        )
    if ensemble is not None:
        picks = ensemble_picks(ensemble, per_group)
    else:
        picks = (
            per_group[0]
            if len(per_group) == 1
            else merge_picks(per_group, first.merge_radius_fraction, catalog=first.catalog)
        )
    return picks if keep_scores else apply_thresholds(picks, thresholds, first.default_threshold)


@dataclass
class RunResults:
    """What ``predict_each_run`` did: the picks of the runs that worked, seconds per run started (failed ones
    too), failures, and the runs it never started (``stop`` said so)."""

    picks: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    picks_per_run: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)


def predict_each_run(
    runs: Sequence[str],
    predict_one: Callable[[str], pd.DataFrame],
    on_error: str = "raise",
    progress: bool = True,
    after_run: Callable[[str, pd.DataFrame, float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> RunResults:
    """The one loop over runs: predict each, time it, log it; a failing run raises or is skipped.

    Args:
        runs: run names, in the order they are predicted (and the picks are concatenated).
        predict_one: run name -> picks table.
        on_error: "raise" stops at the first failure; "skip" logs it, records it in ``failed`` and goes on.
        progress: show a tqdm bar.
        after_run: called with (run, picks, seconds) after each run that worked (the Kaggle time guard).
        stop: asked before each run; True leaves that run and the rest in ``not_started``.
    """
    from tqdm.auto import tqdm

    from cryokit.postprocess import empty_scored_picks

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    results, frames = RunResults(empty_scored_picks()), []
    for index, run in enumerate(tqdm(runs, desc="predict", unit="run", disable=not progress)):
        if stop is not None and stop():
            results.not_started = list(runs[index:])
            break
        picks, error = None, None
        with Timer() as timer:
            try:
                picks = predict_one(run)
            except Exception as caught:  # noqa: BLE001 -- a damaged tomogram must not stop the others
                if on_error == "raise":
                    raise
                error = caught
        results.seconds[run] = timer.seconds
        if error is not None:
            results.failed[run] = f"{type(error).__name__}: {error}"
            log.error("%s: FAILED, skipped (%s)", run, results.failed[run])
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # a failure mid-run can leave the device full
            continue
        frames.append(picks)
        results.picks_per_run[run] = len(picks)
        log.info("%s: %d picks in %.1f s", run, len(picks), timer.seconds)
        if after_run is not None:
            after_run(run, picks, timer.seconds)
    if frames:
        results.picks = pd.concat(frames, ignore_index=True)
    return results


def _as_source(root: str | DataSource, split: str) -> DataSource:
    from cryokit.io.source import KaggleSource

    return KaggleSource(root, split) if isinstance(root, (str, Path)) else root


def check_catalogs(loaded: Sequence[LoadedModel], catalog: ParticleCatalog, map_by_name: bool = False) -> None:
    """Refuse checkpoints whose particles differ from the project's, naming the objects on each side.

    With ``map_by_name`` the objects the checkpoint and the project share are kept (by name) and the others
    dropped from the picks; at least one must be shared.
    """
    for item in loaded:
        differences = item.catalog.differences(catalog)
        if not differences:
            continue
        shared = [n for n in item.catalog.names if n in catalog.names]
        if not map_by_name:
            raise ValueError(
                f"checkpoint {item.path} was trained on other particles than {catalog.source}: {differences} "
                "(pass --map-objects to keep the objects they share, by name)"
            )
        if not shared:
            raise ValueError(f"checkpoint {item.path} shares no particle with {catalog.source}: {differences}")
        log.warning("checkpoint %s: mapping by name (%s); keeping %s", item.path, differences, ", ".join(shared))


def ensemble_mismatch(ensemble: Ensemble, loaded: Sequence[LoadedModel]) -> str:
    """Why ``ensemble`` does not fit the ``loaded`` checkpoints ("" if it does): it must have been fitted on
    the particles they predict, with one member per group (``ensemble_groups``)."""
    differences = ensemble.catalog.differences(loaded[0].catalog)
    if differences:
        return f"was fitted on other particles than checkpoint {loaded[0].path} predicts: {differences}"
    groups = ensemble_groups(loaded)
    if len(groups) != len(ensemble.members):
        return (
            f"has {len(ensemble.members)} member(s) ({'; '.join(ensemble.members)}) but the checkpoints make "
            f"{len(groups)} group(s) ({'; '.join(group_names(groups))})"
        )
    return ""


def _resolve_tta(tta: str | Sequence[str] | None, ensemble: Ensemble | None, n_groups: int) -> tuple[str, ...]:
    """Each group's TTA: ``tta``, or the ensemble's when None; refused where it differs from the ensemble's."""
    if tta is None:
        return ensemble.tta if ensemble is not None else group_ttas("none", n_groups)
    ttas = group_ttas(tta, n_groups)
    if ensemble is not None and ttas != ensemble.tta:
        raise ValueError(
            f"the ensemble was fitted on candidates predicted with TTA {', '.join(ensemble.tta)} (one per member); "
            f"its calibration and thresholds do not hold for {', '.join(ttas)}: predict with the ensemble's TTA "
            "(leave tta out) or fit it again with this one"
        )
    return ttas


def _predict_shard(
    checkpoints: Sequence[str],
    root: str | DataSource,
    split: str,
    tta: str | Sequence[str],
    thresholds: dict[str, float] | None,
    keep_scores: bool,
    on_error: str,
    options: InferenceOptions,
    precision: str,
    progress: bool,
    ensemble: Ensemble | None,
    tomo_type: str | None,
    names: tuple[str, ...],
    runs: list[str],
    device: torch.device,
    threads: int | None = None,
    *,
    preloaded: Sequence[LoadedModel] | None = None,
) -> RunResults:
    """One worker of ``predict_runs``: load the checkpoints on ``device`` (or move ``preloaded``, the
    models already loaded in this process, there), then ``predict_each_run``."""
    from cryokit.training.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    if preloaded is not None:
        loaded = list(preloaded)
        for item in loaded:
            item.model = item.model.to(device)
    else:
        loaded = [load_model(path, device) for path in checkpoints]
    for item in loaded:
        item.model = prepare_for_inference(item.model, options)
    groups = ensemble_groups(loaded)

    def predict_one(run: str) -> pd.DataFrame:
        picks = predict_run(
            groups,
            root,
            split,
            run,
            tta,
            thresholds,
            device,
            keep_scores=keep_scores,
            options=options,
            precision=precision,
            ensemble=ensemble,
            tomo_type=tomo_type,
        )
        return picks[picks["particle_type"].isin(names)].reset_index(drop=True)

    return predict_each_run(runs, predict_one, on_error, progress)


def predict_runs(
    checkpoints: Sequence[str],
    root: str | DataSource,
    split: str = "test",
    runs: Sequence[str] | None = None,
    tta: str | Sequence[str] | None = None,
    thresholds: dict[str, float] | None = None,
    device: str = "auto",
    progress: bool = True,
    keep_scores: bool = False,
    on_error: str = "raise",
    options: InferenceOptions | None = None,
    ensemble: Ensemble | None = None,
    tomo_type: str | None = None,
    map_by_name: bool = False,
    precision: str = "auto",
    workers: int | None = None,
) -> tuple[pd.DataFrame, list[float]]:
    """Picks of every run of a split from one or more checkpoints, and the seconds each run took.

    Checkpoints of one kind (same task, stride, level, tomo type) are averaged map by map; groups of
    different kinds are merged pick by pick (``cryokit.postprocess.merge_picks``). Picks are kept where
    their score reaches the class threshold: ``thresholds`` if given, else the first checkpoint's tuned
    thresholds, else its default threshold.

    With ``on_error="skip"`` a run that fails to load or predict is logged and left out, the others go
    on, and ``picks.attrs["failed_runs"]`` maps each such run to its error; "raise" stops at the first.
    ``options`` (``cryokit.inference.speed.InferenceOptions``) are applied to every model once per worker.
    ``ensemble`` (``cryokit.ensemble``, fitted by ``cryokit ensemble``) merges the groups on calibrated
    scores with its own thresholds; it must have one member per group.

    ``tta``: one of ``TTA_CHOICES`` for every group or one per group (``group_ttas``); None: the TTA the
    ``ensemble`` was fitted with, else "none". An ensemble's calibration holds for the TTA it was fitted
    with, so another is refused.

    ``root`` is a Kaggle root (with ``split``) or any ``DataSource``; a copick source's catalog must
    match the checkpoints' (``check_catalogs``; ``map_by_name`` keeps the shared objects). ``tomo_type``
    reads another tomogram type than the checkpoints were trained on.

    The runs are shared out over devices (``cryokit.inference.shard``): with ``device="auto"`` one worker
    process per visible GPU (``workers`` CPU workers without one), each taking every n-th run; under
    ``torchrun`` rank r of w first takes every w-th run (one device per rank: ``cuda:LOCAL_RANK``, or
    the CPU) and every rank gets all the results back. The picks come back in run order either way.
    """
    from functools import partial

    from cryokit.inference.shard import (
        distributed_rank_world,
        gather_run_results,
        inference_devices,
        merge_run_results,
        process_group,
        run_sharded,
        shard_runs,
    )
    from cryokit.io.layout import select_runs
    from cryokit.training.checkpoint import load_model

    if not checkpoints:
        raise ValueError("predict needs at least one checkpoint")
    resolve_precision(precision, "cpu")  # bad input fails here, not in a worker
    missing = [str(path) for path in checkpoints if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"checkpoint {', '.join(missing)} does not exist")
    options = options or InferenceOptions()
    rank, world = distributed_rank_world()
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", rank))
        gpu = device in ("auto", "cuda") and torch.cuda.is_available()
        devices = [torch.device("cuda", local % torch.cuda.device_count()) if gpu else resolve_device(device)]
    else:
        devices = inference_devices(device, workers)
    source = _as_source(root, split)
    catalog = source.catalog()
    # Checked here, before any inference. One device: its worker runs in this process and takes these
    # models; several: each worker process loads the checkpoints again on its own device.
    loaded = [load_model(path, "cpu") for path in checkpoints]
    check_catalogs(loaded, catalog, map_by_name)
    groups = ensemble_groups(loaded)
    problem = ensemble_mismatch(ensemble, loaded) if ensemble is not None else ""
    if problem:
        raise ValueError(f"the ensemble file {problem}")
    tta = _resolve_tta(tta, ensemble, len(groups))
    runs = select_runs(source.list_runs(), runs, f"runs of {source.describe()}")
    worker = partial(
        _predict_shard,
        [str(c) for c in checkpoints],
        source,
        split,
        tta,
        thresholds,
        keep_scores,
        on_error,
        options,
        precision,
        progress and len(devices) == 1,
        ensemble,
        tomo_type,
        tuple(catalog.names),
        preloaded=loaded if len(devices) == 1 else None,
    )
    with process_group():
        results = gather_run_results(run_sharded(worker, shard_runs(runs, rank, world), devices), runs)
    results = merge_run_results([results], runs)  # run order, whatever the path
    results.picks.attrs["failed_runs"] = results.failed
    # the objects predicted: the catalog's, or with map_by_name those every checkpoint shares with it
    results.picks.attrs["objects"] = [n for n in catalog.names if all(n in m.catalog.names for m in loaded)]
    return results.picks, [results.seconds[run] for run in runs if run in results.seconds]
