"""Runs shared out over devices and machines: one worker per device, results merged in run order.

``cryokit predict`` and the Kaggle notebook predict with one worker process per visible device
(``inference_devices``: every CUDA device, or ``workers`` CPU workers); worker ``i`` of ``n`` takes runs
``i, i + n, i + 2n, ...`` (``shard_runs``) and runs them through the one per-run loop,
``cryokit.inference.predict.predict_each_run``. ``run_sharded`` starts the workers and
``merge_run_results`` puts their results back in run order, so the one CSV is the same as one worker's.
Past one machine, the same split under ``torchrun``: rank ``r`` of ``w`` (``distributed_rank_world``)
takes every ``w``-th run and ``gather_run_results`` brings every rank's results to all of them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd
import torch

if TYPE_CHECKING:
    from cryokit.inference.predict import RunResults

__all__ = [
    "shard_runs",
    "inference_devices",
    "distributed_rank_world",
    "merge_run_results",
    "run_shards",
    "run_sharded",
    "gather_run_results",
    "process_group",
]

log = logging.getLogger(__name__)


def shard_runs(runs: Sequence[str], rank: int, world: int) -> list[str]:
    """Runs ``rank, rank + world, rank + 2 world, ...``: worker ``rank`` of ``world``'s share."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world and world >= 1, got rank {rank} of {world}")
    return list(runs)[rank::world]


def inference_devices(device: str = "auto", workers: int | None = None) -> list[torch.device]:
    """One device per worker.

    Args:
        device: "auto" (every visible CUDA device, else the CPU), "cuda" (every CUDA device), a named
            device ("cuda:1", "cpu": that one).
        workers: how many workers; default one per CUDA device, one on a CPU or named device. More
            workers than CUDA devices reuse them in turn; on the CPU each worker gets its share of the cores.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        gpus = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    else:  # the CPU, or a named device checked as every command checks it (a clear error without a GPU)
        from cryokit.inference import device as devices

        gpus = [devices.resolve_device(device)]
    count = workers or len(gpus)
    return [gpus[i % len(gpus)] for i in range(count)]


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) under ``torchrun`` (its ``RANK`` and ``WORLD_SIZE``), else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def merge_run_results(parts: Sequence[RunResults], runs: Sequence[str]) -> RunResults:
    """One ``RunResults`` from the workers' (each holding some of ``runs``), everything in ``runs``' order."""
    from cryokit.inference.predict import RunResults
    from cryokit.postprocess import empty_scored_picks

    seconds, counts, failed, not_started = {}, {}, {}, set()
    for part in parts:
        seconds.update(part.seconds)
        counts.update(part.picks_per_run)
        failed.update(part.failed)
        not_started.update(part.not_started)
    frames = [part.picks for part in parts if len(part.picks)]
    picks = pd.concat(frames, ignore_index=True) if frames else empty_scored_picks()
    if len(picks):
        order = {run: i for i, run in enumerate(runs)}
        # A stable sort on the run's position keeps each run's rows in the order its worker wrote them.
        position = picks["experiment"].map(order)
        picks = picks.iloc[position.argsort(kind="stable")].reset_index(drop=True)
    return RunResults(
        picks,
        {run: seconds[run] for run in runs if run in seconds},
        {run: counts[run] for run in runs if run in counts},
        {run: failed[run] for run in runs if run in failed},
        [run for run in runs if run in not_started],
    )


def run_shards(worker: Callable[[list[str], torch.device, int | None], Any], runs: Sequence[str], devices) -> list:
    """``worker(share, device, threads)`` for each device's share of ``runs``; the workers' results, in
    device order (a device whose share is empty is left out).

    With one device the worker runs here; with more, each in its own spawned process (CUDA needs
    spawn; ``worker`` must be picklable: a module-level function or a ``functools.partial`` of one).
    CPU workers share the cores (``threads`` each); a CUDA worker keeps torch's default (None).
    """
    runs = list(runs)
    if not devices:
        raise ValueError("sharding needs at least one device")
    if len(devices) == 1:
        return [worker(runs, devices[0], None)]
    cpu_threads = max(1, torch.get_num_threads() // max(1, sum(d.type == "cpu" for d in devices)))
    shares = [shard_runs(runs, i, len(devices)) for i in range(len(devices))]
    log.info("%d runs over %d workers (%s)", len(runs), len(devices), ", ".join(map(str, devices)))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(devices), mp_context=context) as pool:
        futures = [
            pool.submit(worker, share, device, cpu_threads if device.type == "cpu" else None)
            for share, device in zip(shares, devices)
            if share
        ]
        return [future.result() for future in futures]


def run_sharded(
    worker: Callable[[list[str], torch.device, int | None], RunResults],
    runs: Sequence[str],
    devices: Sequence[torch.device],
) -> RunResults:
    """``run_shards`` of a worker returning ``RunResults`` (``predict_each_run``), merged in run order."""
    return merge_run_results(run_shards(worker, runs, devices), list(runs))


def gather_run_results(results: RunResults, runs: Sequence[str]) -> RunResults:
    """Under ``torchrun`` (an initialised process group): every rank's results, merged in run order on
    each rank. Without a process group: ``results`` as they are."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return results
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, results)
    return merge_run_results(parts, runs)


@contextlib.contextmanager
def process_group():
    """Under ``torchrun`` without a process group yet: a Gloo one (small objects only: the picks) for the
    block, destroyed after; otherwise nothing."""
    import torch.distributed as dist

    _, world = distributed_rank_world()
    if world == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()
