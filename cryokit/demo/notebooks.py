"""What the training notebooks call: simulate a dataset when none is given, the training configuration
from the notebook's parameters, and ``train_and_report`` (untrained and best validation scores, the
validation table, curves and a predictions slice)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from cryokit.config import RunConfig
from cryokit.io.atomic import atomic_write_text

__all__ = ["TrainingReport", "train_and_report", "simulate_for_notebook", "notebook_training_config"]


@dataclass
class TrainingReport:
    """What the training notebooks show: the untrained and best validation scores, the validation
    table at tuned thresholds, the validation picks, and the figures written."""

    untrained_score: float
    best_score: float
    best_epoch: int
    val_table: pd.DataFrame
    val_picks: pd.DataFrame
    files: dict[str, Path]


def notebook_training_config(
    model: str,
    data_root: str | Path | None,
    out_dir: str | Path,
    val_runs=None,
    *,
    copick: Mapping[str, Any] | None = None,
    level: int = 1,
    patch_size_zyx=(32, 96, 96),
    batch_size: int = 4,
    patches_per_epoch: int | None = None,
    epochs: int = 24,
    lr: float = 2e-3,
    seed: int = 0,
    track: bool = True,
    mlflow_uri: str = "",
    appearance: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The demo's CPU-friendly training configuration for a training notebook's parameters.

    Args:
        model: a ``MODEL_PRESETS`` name (sets model, target and loss together).
        patches_per_epoch: None: the demo recipe's for the family (``DEMO_PATCHES_PER_EPOCH``: 192 for the
            U-Net at output stride 2 and for the half-width detector).
        data_root: a Kaggle-layout root; its last run validates unless ``val_runs`` names others.
        copick: instead of ``data_root``, a copick project: ``{"config": path, "voxel_spacing": A,
            "tomo_type": ..., "pick_user": ..., "pick_session": ...}`` (``cryokit.config.DataConfig`` names).
        out_dir: the run folder; MLflow's experiment is ``cryokit-train-{model}``.
        appearance: the intensity and imaging augmentations (``cryokit.data.appearance``; on by default);
            False switches the five off.
        overrides: further ``{"section.key": value}`` overrides (the notebook's own parameters).
    """
    from cryokit.config import MODEL_PRESETS, apply_overrides
    from cryokit.demo.pipeline import demo_training_config
    from cryokit.models.build import data_source

    data = {"data.root": str(data_root or "")}
    if copick:
        unknown = set(copick) - {"config", "voxel_spacing", "tomo_type", "pick_user", "pick_session"}
        if unknown or data_root:
            raise ValueError(
                f"copick parameters: unknown key(s) {sorted(unknown)}" if unknown else "give data_root or copick"
            )
        data = {"data.root": "", "data.copick": str(copick["config"])}
        data.update({f"data.{k}": v for k, v in copick.items() if k != "config"})
    if not appearance:
        data.update({f"augment.{name}_p": 0.0 for name in ("gamma", "blur", "bias", "bandpass", "wedge")})
    base = apply_overrides(demo_training_config(model=model), data)
    runs = data_source(base.data).list_runs()
    val_runs = list(val_runs) if val_runs else runs[-1:]
    return apply_overrides(
        base,
        {
            **MODEL_PRESETS[model],
            "data.val_runs": val_runs,
            "data.train_runs": [r for r in runs if r not in val_runs],
            "data.level": level,
            "patch.size_zyx": list(patch_size_zyx),
            "patch.batch_size": batch_size,
            "patch.patches_per_epoch": patches_per_epoch or base.patch.patches_per_epoch,
            "train.epochs": epochs,
            "train.lr": lr,
            "train.seed": seed,
            "train.out_dir": str(out_dir),
            "tracking.enabled": track,
            "tracking.tracking_uri": mlflow_uri,
            "tracking.experiment": f"cryokit-train-{model}",
            **dict(overrides or {}),
        },
    )


def train_and_report(config: RunConfig, progress: bool = True) -> TrainingReport:
    """Score the untrained network, train it (``cryokit.training.fit``, MLflow as configured), predict the
    validation runs with the best checkpoint and draw curves and a predictions slice into the run folder."""
    from cryokit.data.normalise import normalise_tomogram
    from cryokit.inference.device import resolve_device
    from cryokit.inference.predict import predict_runs
    from cryokit.metric import score_table
    from cryokit.models.build import build_model_and_task, data_source, sliding_window
    from cryokit.plots.training import plot_predictions_on_slice
    from cryokit.training.loop import evaluate, fit, seed_everything
    from cryokit.training.tracking import open_tracker

    if not config.data.val_runs:
        raise ValueError("train_and_report needs data.val_runs: the report is about validation runs")
    data, out_dir, val_runs = config.data, Path(config.train.out_dir), list(config.data.val_runs)
    source = data_source(data)
    catalog = source.catalog()
    tomogram = source.open_tomogram(val_runs[0], data.tomo_type, data.level)
    seed_everything(config.train.seed)
    device = resolve_device(config.train.device)
    untrained, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx, catalog)
    untrained_score = evaluate(
        untrained.to(device),
        task,
        source,
        val_runs,
        sliding_window(config.patch),
        device,
        config.train.amp,
        data.tomo_type,
        data.level,
        config.postprocess.default_threshold,
        catalog,
    ).score
    track = config.tracking
    with open_tracker(track.enabled, track.tracking_uri, track.experiment, out_dir, track.run_name) as tracker:
        tracker.log_metrics({"untrained_val_score": untrained_score}, step=0)
        result = fit(config, tracker=tracker, progress=progress, overwrite=True)  # a re-run replaces its run
    val_picks, _ = predict_runs([str(result.best_checkpoint)], source, data.split, val_runs, progress=progress)
    solution = source.read_solution(val_runs)
    table = score_table(solution, val_picks, catalog=catalog)
    files = {"curves_png": out_dir / "curves.png", "predictions_png": out_dir / f"predictions_{val_runs[0]}.png"}
    plt.close(
        plot_predictions_on_slice(
            normalise_tomogram(tomogram),
            solution[solution["experiment"] == val_runs[0]],
            val_picks[val_picks["experiment"] == val_runs[0]],
            tomogram.voxel_spacing_angstrom_zyx,
            path=files["predictions_png"],
            title=f"{val_runs[0]}: predicted (x) vs true (o) picks",
            catalog=catalog,
        )
    )
    summary = {"untrained_score": untrained_score, "best_score": result.best_score, "best_epoch": result.best_epoch}
    files["report_json"] = atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=2))
    return TrainingReport(untrained_score, result.best_score, result.best_epoch, table, val_picks, files)


def simulate_for_notebook(
    out_dir: str | Path,
    n_runs: int,
    shape_zyx,
    difficulty: str = "default",
    seed: int = 0,
    tomo_types: Sequence[str] = ("denoised",),
) -> tuple[Path, list[str]]:
    """Simulate ``n_runs`` train runs into ``out_dir/data``; returns (root, run names)."""
    from cryokit.synth import config_for_difficulty, simulate_dataset

    root = Path(out_dir) / "data"
    simulation = config_for_difficulty(difficulty, shape_zyx=tuple(shape_zyx), tomo_types=tuple(tomo_types))
    return root, simulate_dataset(root, n_runs, seed, "train", simulation)
