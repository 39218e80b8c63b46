"""Training: ``fit`` is the whole loop, on one screen; the helpers it needs sit above it.

One trainer serves every model family: the network, its ``cryokit.tasks`` task and the target renderer
come from ``cryokit.models.build``, patches from ``cryokit.data.dataset``. ``fit`` is the edge where the
run configuration is unpacked; every helper below takes the values it uses. Validation runs the real pipeline on
whole held-out runs (sliding windows, decoding, the competition metric) and keeps the best
checkpoint by validation F-beta at per-class thresholds tuned on those runs.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from cryokit.config import RunConfig, config_differences, from_dict, to_dict
from cryokit.data.dataset import PatchDataset, collate, split_runs
from cryokit.data.normalise import normalise_tomogram
from cryokit.inference.device import autocast, native_bf16, resolve_device, resolve_precision
from cryokit.inference.predict import predict_volume_picks
from cryokit.inference.sliding_window import SlidingWindow
from cryokit.inference.speed import InferenceOptions
from cryokit.io.source import DataSource
from cryokit.metric import score_table
from cryokit.models.build import build_dataset, build_model_and_task, data_source, sliding_window
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.postprocess import apply_thresholds
from cryokit.tasks import Task
from cryokit.thresholds import save_thresholds, threshold_curves, thresholds_of_curves
from cryokit.training.checkpoint import check_weights, init_from_checkpoint, load_checkpoint, save_checkpoint
from cryokit.training.tracking import NullTracker

__all__ = [
    "FitResult",
    "Evaluation",
    "resolve_device",
    "seed_everything",
    "lr_at",
    "evaluate",
    "fit",
    "check_resume_config",
    "write_validation_files",
    "RUN_FILES",
    "RESUME_MAY_CHANGE",
]

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Validation on whole runs: scored candidates, tuned thresholds, the per-class table and F-beta at them,
    and the thresholds to save for other runs (``thresholds`` times the threshold scale)."""

    candidates: pd.DataFrame
    thresholds: dict[str, float]
    table: pd.DataFrame
    score: float
    saved_thresholds: dict[str, float]


@dataclass
class FitResult:
    out_dir: Path
    best_score: float
    best_epoch: int
    history: list[dict]
    thresholds: dict[str, float]
    best_checkpoint: Path
    last_checkpoint: Path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int) -> float:
    """Linear warm-up to ``base_lr``, then cosine decay to 5 % of it at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _rng_states() -> dict:
    """The RNG states as tensors and plain values, so a checkpoint loads with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)}
        | {"has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore_rng(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = states["numpy"]
    keys = numpy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    task: Task,
    source: DataSource,
    runs: list[str],
    window: SlidingWindow,
    device: torch.device,
    amp: bool = True,
    tomo_type: str = "denoised",
    level: int = 0,
    default_threshold: float = 0.2,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
    precision: str = "auto",
    threshold_scale: float = 1.0,
) -> Evaluation:
    """Predict every run whole, tune per-class thresholds on them, and score with the metric at them;
    ``saved_thresholds`` are those times ``threshold_scale`` (``PostprocessConfig.threshold_scale``).

    ``precision`` is the network's (``cryokit.inference.device.PRECISIONS``; "auto" follows ``amp`` on
    CUDA and is fp32 on the CPU, so thresholds are tuned on exact maps there).

    Classes without references in ``runs`` keep no thresholds of their own (``default_threshold``).
    """
    model.eval()
    frames = []
    for run in runs:
        tomogram = source.open_tomogram(run, tomo_type, level)
        frames.append(
            predict_volume_picks(
                [model],
                task,
                normalise_tomogram(tomogram),
                tomogram.voxel_spacing_angstrom_zyx,
                run,
                window,
                device=device,
                amp=amp,
                options=InferenceOptions(cpu_bf16=False),
                precision=precision,
            )
        )
    candidates = pd.concat(frames, ignore_index=True)
    solution = source.read_solution(runs)
    curves = threshold_curves(candidates, solution, catalog=catalog)
    thresholds = thresholds_of_curves(curves)
    table = score_table(solution, apply_thresholds(candidates, thresholds, default_threshold), catalog=catalog)
    saved = thresholds_of_curves(curves, threshold_scale)
    return Evaluation(candidates, thresholds, table, float(table.attrs["score"]), saved)


def _epoch_metrics(evaluation: Evaluation) -> dict[str, float]:
    metrics = {"val_score": evaluation.score}
    for row in evaluation.table.itertuples():
        if row.weight:
            metrics.update(
                {
                    f"val_f4/{row.particle_type}": row.fbeta,
                    f"val_precision/{row.particle_type}": row.precision,
                    f"val_recall/{row.particle_type}": row.recall,
                }
            )
    return metrics


@dataclass
class _Setup:
    """Everything ``fit`` builds before the loop. ``model`` is the bare network; ``net`` is what the
    loop calls (the DistributedDataParallel wrapper under torchrun, else the network itself)."""

    model: torch.nn.Module
    net: torch.nn.Module
    task: Task
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    dataset: PatchDataset
    loader: DataLoader
    device: torch.device
    spacing: np.ndarray
    source: DataSource
    catalog: ParticleCatalog
    val_runs: list[str]
    window: SlidingWindow
    rank: int = 0
    world: int = 1


def _distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device): joins torchrun's process group when ``WORLD_SIZE`` > 1 (NCCL on
    GPUs, Gloo on CPU); a plain process is rank 0 of 1."""
    import datetime
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        # Rank 0 validates while the others wait: allow that to take a while.
        torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=2))
    return torch.distributed.get_rank(), world, device


def _setup(cfg: RunConfig) -> _Setup:
    resolve_precision(cfg.train.val_precision, "cpu")  # a bad train.val_precision fails before training
    rank, world, device = _distributed(cfg.train.device)
    seed_everything(cfg.train.seed)
    source = data_source(cfg.data)
    train_runs, val_runs = _train_and_val_runs(source, cfg.data.train_runs, cfg.data.val_runs)
    spacing = source.open_tomogram(train_runs[0], cfg.data.tomo_type, cfg.data.level).voxel_spacing_angstrom_zyx
    catalog = source.catalog()
    model, task = build_model_and_task(cfg, spacing, catalog)
    if cfg.train.init_from:
        init_from_checkpoint(model, cfg.train.init_from)
    model.to(device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    dataset = build_dataset(
        cfg.data, cfg.patch, cfg.target, cfg.augment, train_runs, cfg.train.seed, catalog, source=source
    )
    # Items are functions of (seed, epoch, index): ranks take interleaved indices, so the ranks'
    # batches together are exactly one single-process batch of world x batch_size patches.
    sampler = DistributedSampler(dataset, world, rank, shuffle=False, drop_last=True) if world > 1 else None
    loader = DataLoader(
        dataset,
        batch_size=cfg.patch.batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        collate_fn=collate,
        drop_last=True,
    )
    total_steps = cfg.train.epochs * len(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total_steps, 1.0, cfg.train.warmup_steps)
    )
    use_fp16 = device.type == "cuda" and cfg.train.amp and not native_bf16()  # fp16 needs a loss scaler
    ema = None
    if cfg.train.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True)
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)
    return _Setup(
        model,
        net,
        task,
        ema,
        optimizer,
        scheduler,
        scaler,
        dataset,
        loader,
        device,
        spacing,
        source,
        catalog,
        val_runs,
        sliding_window(cfg.patch),
        rank,
        world,
    )


def _state(run: _Setup, config: RunConfig, epoch: int, step: int, best: tuple, history: list, thresholds: dict) -> dict:
    return {
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema else None,
        "ema_n_averaged": run.ema.n_averaged if run.ema else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "step": step,
        "best_score": best[0],
        "best_epoch": best[1],
        "history": history,
        "thresholds": thresholds,
        "config": to_dict(config),
        "voxel_spacing_angstrom_zyx": list(map(float, run.spacing)),
        "catalog": run.catalog.to_records(),
        "catalog_source": run.catalog.source,
        "rng": _rng_states(),
    }


def _resume(run: _Setup, path: Path, state: dict) -> tuple[int, int, tuple, list, dict]:
    """Load ``last.pt`` (read as ``state``) into the run; returns (epoch, step, best, history, thresholds)."""
    check_weights(run.model, state["model"], path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        run.ema.module.load_state_dict(state["ema"])
        run.ema.n_averaged.fill_(int(state["ema_n_averaged"]))
    _restore_rng(state["rng"])
    log.info("resumed %s at epoch %d (step %d)", path, state["epoch"], state["step"])
    return (
        state["epoch"],
        state["step"],
        (state["best_score"], state["best_epoch"]),
        state["history"],
        state["thresholds"],
    )


def _train_step(run: _Setup, batch: dict, amp: bool, grad_clip: float, where: str, cpu_bf16: bool = False):
    """One optimiser step; returns the ``LossOutput``. A non-finite loss fails the run (Optuna: FAIL).
    ``cpu_bf16``: bf16 autocast on a CPU with native bf16 (``cryokit.inference.device.cpu_native_bf16``)."""
    with autocast(run.device, amp, cpu_bf16):
        output = run.net(batch["image"].to(run.device, non_blocking=True))
    # The loss in fp32, whatever precision the network's outputs came in.
    loss = run.task.loss(_float32(output), _to_device(batch["target"], run.device))
    if not torch.isfinite(loss.total.detach()):
        raise FloatingPointError(
            f"non-finite training loss {float(loss.total.detach()):.4g} at {where} (lower train.lr or check the inputs)"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss.total).backward()
    run.scaler.unscale_(run.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
    if run.scaler.is_enabled() or torch.isfinite(norm):
        run.scaler.step(run.optimizer)  # an enabled (fp16) scaler skips a step with non-finite gradients itself
    else:
        # A bf16 backward can overflow on one batch (2 % of the CPU-bf16 U-Net's steps); clipping would
        # turn the infinities into NaN weights, so the step is skipped, as a loss scaler does.
        log.warning("non-finite gradients at %s: step skipped", where)
    run.scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return loss


def _mean_over_ranks(sums: dict[str, float], steps: int, run: _Setup) -> dict[str, float]:
    """Per-step means of the loss terms, averaged over every rank's steps."""
    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys] + [float(steps)], dtype=torch.float64)
    if run.world > 1:
        torch.distributed.all_reduce(values)
    return {f"train_{k}": float(v) / max(1.0, float(values[-1])) for k, v in zip(keys, values[:-1])}


def _agree(value, run: _Setup):
    """Rank 0's ``value`` on every rank (the early-stopping decision)."""
    if run.world == 1:
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def fit(
    config: RunConfig,
    resume: bool = False,
    tracker: NullTracker | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> FitResult:
    """Train ``config``; checkpoints ``last.pt`` every epoch and ``best.pt`` on a better validation F-beta.

    Under ``torchrun --nproc-per-node N -m cryokit train ...`` every rank trains on its share of each
    epoch's patches with DistributedDataParallel; rank 0 alone validates, logs, shows progress and
    writes checkpoints, and every rank stops when rank 0 decides to.

    Args:
        config: the run configuration (``config.train.out_dir`` receives checkpoints and plots).
        resume: continue from ``out_dir/last.pt`` (weights, optimiser, scheduler, scaler, EMA, epoch, RNG);
            it must exist, and ``config`` must equal the stored configuration but for ``RESUME_MAY_CHANGE``.
        overwrite: replace a run already in ``out_dir``. Without ``resume`` or ``overwrite`` a folder that
            holds ``best.pt`` or ``last.pt`` is refused, so that retraining never destroys a model.
        tracker: MLflow tracker (``cryokit.training.tracking``); None logs nothing. Used on rank 0 only.
        on_epoch_end: called on rank 0 with (epoch, metrics) after each epoch; Optuna uses it to prune.
    """
    cfg, out_dir = config, Path(config.train.out_dir)
    stored = _check_run_folder(out_dir, cfg, resume, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _setup(cfg)
    main = run.rank == 0
    tracker = tracker if (tracker is not None and main) else NullTracker()
    epoch, step, best, history, thresholds = 0, 0, (-1.0, -1), [], {}
    if stored is not None:
        epoch, step, best, history, thresholds = _resume(run, out_dir / "last.pt", stored)
        if main:
            write_validation_files(out_dir, run.catalog)  # a kill between best.pt and its files left them behind
    tracker.log_params(to_dict(cfg))
    stale = epoch - best[1] if best[1] >= 0 else 0  # epochs since the best validation score
    while epoch < cfg.train.epochs:
        run.net.train()
        run.dataset.set_epoch(epoch)
        sums: dict[str, float] = {}
        bar = tqdm(
            run.loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not (progress and main), leave=False
        )
        for batch in bar:
            where = f"epoch {epoch + 1}, step {step + 1}"
            loss = _train_step(run, batch, cfg.train.amp, cfg.train.grad_clip, where, cfg.train.cpu_bf16)
            step += 1
            for key, value in {"loss": float(loss.total.detach()), **loss.terms}.items():
                sums[key] = sums.get(key, 0.0) + value
            rate = bar.format_dict["rate"] or 0.0  # batches per second
            bar.set_postfix(
                loss=f"{sums['loss'] / (bar.n + 1):.4f}",
                lr=f"{run.scheduler.get_last_lr()[0]:.2e}",
                patches_per_s=f"{rate * cfg.patch.batch_size * run.world:.1f}",
            )
        epoch += 1
        metrics = {**_mean_over_ranks(sums, len(run.loader), run), "lr": run.scheduler.get_last_lr()[0]}
        if main and run.val_runs and (epoch % cfg.train.val_every == 0 or epoch == cfg.train.epochs):
            evaluation = evaluate(
                run.ema.module if run.ema else run.model,
                run.task,
                run.source,
                run.val_runs,
                run.window,
                run.device,
                cfg.train.amp,
                cfg.data.tomo_type,
                cfg.data.level,
                cfg.postprocess.default_threshold,
                run.catalog,
                cfg.train.val_precision,
                cfg.postprocess.threshold_scale,
            )
            metrics.update(_epoch_metrics(evaluation))
            if evaluation.score > best[0]:
                best, thresholds, stale = (evaluation.score, epoch), evaluation.saved_thresholds, 0
                state = _state(run, cfg, epoch, step, best, history + [metrics], thresholds)
                state["val_table"] = evaluation.table.to_dict(orient="list")
                save_checkpoint(out_dir / "best.pt", state)
                write_validation_files(out_dir, run.catalog)
            else:
                stale += 1
        history.append({"epoch": epoch, **metrics})
        if main:
            tracker.log_metrics(metrics, step=epoch)
            save_checkpoint(out_dir / "last.pt", _state(run, cfg, epoch, step, best, history, thresholds))
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" not in k))
            if on_epoch_end is not None:
                on_epoch_end(epoch, metrics)
        if _agree(bool(cfg.train.early_stopping_patience and stale >= cfg.train.early_stopping_patience), run):
            log.info("early stopping: no better validation score for %d epochs", stale)
            break
    if main and not run.val_runs:  # nothing to select on: the last weights are the result
        save_checkpoint(out_dir / "best.pt", _state(run, cfg, epoch, step, best, history, thresholds))
    if main:
        _log_artifacts(out_dir, history, tracker, run.catalog)
    if run.world > 1:
        torch.distributed.barrier()
    return FitResult(out_dir, best[0], best[1], history, thresholds, out_dir / "best.pt", out_dir / "last.pt")


# Run-folder files: the checkpoints, and the files derived from best.pt that fit rewrites.
RUN_FILES = ("best.pt", "last.pt", "thresholds.json", "val_table.csv", "history.json", "curves.png")
# Keys a resumed run may change: where the data and outputs are, the hardware, and the tracking.
RESUME_MAY_CHANGE = ("data.root", "train.out_dir", "train.device", "train.num_workers", "tracking.")


def _check_run_folder(out_dir: Path, config: RunConfig, resume: bool, overwrite: bool) -> dict | None:
    """The state of ``out_dir/last.pt`` to resume from (None for a fresh run), after the folder checks."""
    held = [name for name in ("best.pt", "last.pt") if (out_dir / name).is_file()]
    if resume:
        if not (out_dir / "last.pt").is_file():
            raise FileNotFoundError(f"cannot resume: {out_dir / 'last.pt'} does not exist (train without --resume)")
        state = load_checkpoint(out_dir / "last.pt")
        check_resume_config(from_dict(RunConfig, state["config"]), config, out_dir / "last.pt")
        return state
    if held and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a run ({', '.join(held)}): pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )
    if held and int(os.environ.get("RANK", "0")) == 0:
        for name in RUN_FILES:
            (out_dir / name).unlink(missing_ok=True)
    return None


def check_resume_config(stored: RunConfig, config: RunConfig, path: Path) -> None:
    """Raise naming every key where ``config`` contradicts the configuration stored in ``path``."""
    changed = [
        (key, old, new)
        for key, old, new in config_differences(stored, config)
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)
    ]
    if changed:
        details = "; ".join(f"{key}: stored {old!r}, given {new!r}" for key, old, new in changed)
        raise ValueError(
            f"--resume continues the run of {path} with its stored configuration, which this one contradicts "
            f"({details}); drop those settings, or train a new run in another folder"
        )


def write_validation_files(out_dir: Path, catalog: ParticleCatalog = COMPETITION_CATALOG) -> None:
    """``thresholds.json`` and ``val_table.csv`` from ``out_dir/best.pt``, which holds both: the checkpoint
    is the one source, so a kill between writes can only leave these files stale until the next call."""
    best = out_dir / "best.pt"
    if not best.is_file():
        return
    state = load_checkpoint(best)
    save_thresholds(out_dir / "thresholds.json", state.get("thresholds") or {}, catalog)
    if state.get("val_table") is not None:
        from cryokit.io.atomic import atomic_path

        with atomic_path(out_dir / "val_table.csv") as tmp:
            pd.DataFrame(state["val_table"]).to_csv(tmp, index=False)


def _log_artifacts(out_dir: Path, history: list[dict], tracker: NullTracker, catalog: ParticleCatalog) -> None:
    """Curves as PNG and the history as JSON in the run folder; those, the best checkpoint, its
    thresholds and validation table as MLflow artifacts."""
    import json

    import matplotlib.pyplot as plt

    from cryokit.io.atomic import atomic_write_text
    from cryokit.plots.training import plot_training_curves

    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1))
    plt.close(plot_training_curves(history, out_dir / "curves.png", catalog))
    for name in ("curves.png", "history.json", "best.pt", "thresholds.json", "val_table.csv"):
        if (out_dir / name).is_file():
            tracker.log_artifact(out_dir / name)


def _train_and_val_runs(source: DataSource, train_runs, val_runs) -> tuple[list[str], list[str]]:
    """``data.train_runs`` (default: every run not held out) and ``data.val_runs``, checked to exist."""
    available = source.list_runs()
    train, val = split_runs(available, val_runs)
    if train_runs:
        unknown = sorted(set(train_runs) - set(available))
        if unknown:
            raise ValueError(f"data.train_runs {unknown} are not among the runs {available}")
        overlap = sorted(set(train_runs) & set(val))
        if overlap:
            raise ValueError(f"runs {overlap} are in both data.train_runs and data.val_runs")
        train = list(train_runs)
    return train, val


def _float32(output):
    """A network's output (a tensor, or a dict or sequence of them) with floating tensors in fp32."""
    if isinstance(output, dict):
        return {k: _float32(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(_float32(v) for v in output)
    return output.float() if torch.is_tensor(output) and output.is_floating_point() else output


def _to_device(target, device: torch.device):
    if isinstance(target, dict):
        return {k: v.to(device, non_blocking=True) for k, v in target.items()}
    return target.to(device, non_blocking=True)
