"""Training: ``fit`` is the whole loop, on one screen; the helpers it needs sit above it.

One trainer serves every model family: the network and its ``cryokit.tasks`` task come from
``cryokit.models.build``, patches from ``cryokit.dataset``. Validation runs the real pipeline on
whole held-out runs (sliding windows, decoding, the competition metric) and keeps the best
checkpoint by validation F-beta at per-class thresholds tuned on those runs.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cryokit.checkpoint import load_checkpoint, save_checkpoint
from cryokit.config import RunConfig, to_dict
from cryokit.dataset import PatchDataset, collate, split_runs
from cryokit.inference import autocast, predict_volume_picks
from cryokit.io import list_runs, open_run_tomogram, read_solution
from cryokit.metric import score_table
from cryokit.models.build import build_model_and_task
from cryokit.patching import normalise_tomogram
from cryokit.tasks import apply_thresholds
from cryokit.thresholds import best_thresholds, save_thresholds
from cryokit.tracking import NullTracker

__all__ = ["FitResult", "Evaluation", "resolve_device", "seed_everything", "lr_at", "evaluate", "fit"]

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Validation on whole runs: scored candidates, tuned thresholds, the per-class table and F-beta."""

    candidates: pd.DataFrame
    thresholds: dict[str, float]
    table: pd.DataFrame
    score: float


@dataclass
class FitResult:
    out_dir: Path
    best_score: float
    best_epoch: int
    history: list[dict]
    thresholds: dict[str, float]
    best_checkpoint: Path
    last_checkpoint: Path


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when present; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@torch.no_grad()
def evaluate(model: torch.nn.Module, task, config: RunConfig, runs: list[str], device: torch.device) -> Evaluation:
    """Predict every run whole, tune per-class thresholds on them, and score with the metric."""
    model.eval()
    frames = []
    for run in runs:
        tomogram = open_run_tomogram(config.data.root, config.data.split, run, config.data.tomo_type, config.data.level)
        frames.append(predict_volume_picks([model], task, normalise_tomogram(tomogram),
                                           tomogram.voxel_spacing_angstrom_zyx, run, config.patch,
                                           config.postprocess, device=device, amp=config.train.amp))
    candidates = pd.concat(frames, ignore_index=True)
    solution = read_solution(config.data.root, config.data.split, runs)
    thresholds = best_thresholds(candidates, solution)
    table = score_table(solution, apply_thresholds(candidates, thresholds, config.postprocess.default_threshold))
    return Evaluation(candidates, thresholds, table, float(table.attrs["score"]))


def _epoch_metrics(evaluation: Evaluation) -> dict[str, float]:
    metrics = {"val_score": evaluation.score}
    for row in evaluation.table.itertuples():
        if row.weight:
            metrics.update({f"val_f4/{row.particle_type}": row.fbeta, f"val_precision/{row.particle_type}": row.precision,
                            f"val_recall/{row.particle_type}": row.recall})
    return metrics


def _state(model, ema, optimizer, scheduler, scaler, config, spacing, epoch, step, best, history, thresholds) -> dict:
    return {"model": model.state_dict(), "ema": ema.module.state_dict() if ema else None,
            "ema_n_averaged": ema.n_averaged if ema else None, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "step": step,
            "best_score": best[0], "best_epoch": best[1], "history": history, "thresholds": thresholds,
            "config": to_dict(config), "voxel_spacing_angstrom_zyx": list(map(float, spacing)), "rng": _rng_states()}


def fit(config: RunConfig, resume: bool = False, tracker: NullTracker | None = None,
        on_epoch_end: Callable[[int, dict], None] | None = None, progress: bool = True) -> FitResult:
    """Train ``config``; checkpoints ``last.pt`` every epoch and ``best.pt`` on a better validation F-beta.

    Args:
        config: the run configuration (``config.train.out_dir`` receives checkpoints and plots).
        resume: continue from ``out_dir/last.pt`` (weights, optimiser, scheduler, scaler, EMA, epoch, RNG).
        tracker: MLflow tracker (``cryokit.tracking``); None logs nothing.
        on_epoch_end: called with (epoch, metrics) after each validation; Optuna uses it to prune.
    """
    cfg, tracker = config, tracker or NullTracker()
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    train_runs, val_runs = _train_and_val_runs(cfg)
    spacing = open_run_tomogram(cfg.data.root, cfg.data.split, train_runs[0], cfg.data.tomo_type,
                                cfg.data.level).voxel_spacing_angstrom_zyx
    model, task = build_model_and_task(cfg, spacing)
    model.to(device)
    dataset = PatchDataset.from_config(cfg.data, cfg.patch, cfg.target, cfg.augment, train_runs, seed=cfg.train.seed)
    loader = DataLoader(dataset, batch_size=cfg.patch.batch_size, shuffle=False, num_workers=cfg.train.num_workers,
                        collate_fn=collate, drop_last=True)
    total_steps = cfg.train.epochs * len(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total_steps, 1.0, cfg.train.warmup_steps))
    use_fp16 = device.type == "cuda" and cfg.train.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay),
                        use_buffers=True) if cfg.train.ema_decay > 0 else None
    epoch, step, best, history, thresholds = 0, 0, (-1.0, -1), [], {}
    if resume and (out_dir / "last.pt").is_file():
        state = load_checkpoint(out_dir / "last.pt", device)
        model.load_state_dict(state["model"]); optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"]); scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"]); ema.n_averaged.fill_(int(state["ema_n_averaged"]))
        epoch, step, best, history = state["epoch"], state["step"], (state["best_score"], state["best_epoch"]), state["history"]
        thresholds = state["thresholds"]
        _restore_rng(state["rng"])
        log.info("resumed %s at epoch %d (step %d)", out_dir / "last.pt", epoch, step)
    tracker.log_params(to_dict(cfg))
    stale = epoch - best[1] if best[1] >= 0 else 0  # epochs since the best validation score
    while epoch < cfg.train.epochs:
        model.train()
        dataset.set_epoch(epoch)
        sums: dict[str, float] = {}
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", disable=not progress, leave=False)
        for batch in bar:
            image = batch["image"].to(device, non_blocking=True)
            target = _to_device(batch["target"], device)
            with autocast(device, cfg.train.amp):
                loss = task.loss(model(image), target)
            if not torch.isfinite(loss.total.detach()):  # a diverged run: fail it (Optuna records FAIL)
                raise FloatingPointError(f"non-finite training loss {float(loss.total.detach()):.4g} at epoch "
                                         f"{epoch + 1}, step {step + 1} (lower train.lr or check the inputs)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss.total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            for key, value in {"loss": float(loss.total.detach()), **loss.terms}.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix(loss=f"{sums['loss'] / (bar.n + 1):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        epoch += 1
        metrics = {f"train_{k}": v / max(1, len(loader)) for k, v in sums.items()}
        metrics["lr"] = scheduler.get_last_lr()[0]
        if val_runs and (epoch % cfg.train.val_every == 0 or epoch == cfg.train.epochs):
            evaluation = evaluate(ema.module if ema else model, task, cfg, val_runs, device)
            metrics.update(_epoch_metrics(evaluation))
            if evaluation.score > best[0]:
                best, thresholds, stale = (evaluation.score, epoch), evaluation.thresholds, 0
                save_checkpoint(out_dir / "best.pt", _state(model, ema, optimizer, scheduler, scaler, cfg, spacing,
                                                            epoch, step, best, history + [metrics], thresholds))
                evaluation.table.to_csv(out_dir / "val_table.csv", index=False)
                save_thresholds(out_dir / "thresholds.json", thresholds)
            else:
                stale += 1
        history.append({"epoch": epoch, **metrics})
        tracker.log_metrics(metrics, step=epoch)
        save_checkpoint(out_dir / "last.pt", _state(model, ema, optimizer, scheduler, scaler, cfg, spacing,
                                                    epoch, step, best, history, thresholds))
        log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/" not in k))
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if cfg.train.early_stopping_patience and stale >= cfg.train.early_stopping_patience:
            log.info("early stopping: no better validation score for %d epochs", stale)
            break
    if not val_runs:  # nothing to select on: the last weights are the result
        save_checkpoint(out_dir / "best.pt", _state(model, ema, optimizer, scheduler, scaler, cfg, spacing,
                                                    epoch, step, best, history, thresholds))
    return FitResult(out_dir, best[0], best[1], history, thresholds, out_dir / "best.pt", out_dir / "last.pt")


def _train_and_val_runs(cfg: RunConfig) -> tuple[list[str], list[str]]:
    """``data.train_runs`` (default: every run not held out) and ``data.val_runs``, checked to exist."""
    available = list_runs(cfg.data.root, cfg.data.split)
    train, val = split_runs(available, cfg.data.val_runs)
    if cfg.data.train_runs:
        unknown = sorted(set(cfg.data.train_runs) - set(available))
        if unknown:
            raise ValueError(f"data.train_runs {unknown} are not among the runs {available}")
        overlap = sorted(set(cfg.data.train_runs) & set(val))
        if overlap:
            raise ValueError(f"runs {overlap} are in both data.train_runs and data.val_runs")
        train = list(cfg.data.train_runs)
    return train, val


def _to_device(target, device: torch.device):
    if isinstance(target, dict):
        return {k: v.to(device, non_blocking=True) for k, v in target.items()}
    return target.to(device, non_blocking=True)
