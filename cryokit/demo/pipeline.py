"""The main job end to end: data, classical baseline, U-Net training, prediction, scoring, plots.

``run_demo`` is what ``cryokit demo`` (and the README's first command) runs. Without ``data_root`` it
simulates a dataset in the Kaggle layout: training runs and one validation run with one seed,
held-out runs with another. With ``data_root`` (the real competition data, or any Kaggle-layout
root) it takes the last runs of the train split as held-out runs and the one before as validation.
The held-out runs are predicted by the baseline and by the trained U-Net (with flip TTA, thresholds tuned on
the validation run with it) and scored with the competition metric; everything lands in one folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from cryokit.config import (
    MODEL_PRESETS,
    AugmentConfig,
    DataConfig,
    ModelConfig,
    PatchConfig,
    PostprocessConfig,
    RunConfig,
    TrackingConfig,
    TrainConfig,
    apply_overrides,
    replace,
    to_dict,
)
from cryokit.io import list_runs, open_run_tomogram, read_solution
from cryokit.io.atomic import atomic_write_text
from cryokit.io.source import KaggleSource
from cryokit.io.submission import write_submission

__all__ = ["DEMO_PATCHES_PER_EPOCH", "DEMO_TTA", "DemoConfig", "DemoResult", "demo_training_config", "run_demo"]

log = logging.getLogger(__name__)


# Patches per epoch of each model family in the demo recipe (24 epochs). The U-Net at output stride 2 costs
# about a third of stride 1 per patch and spends the same CPU time on 3x the patches (103 against 107 s per
# epoch measured side by side; 0.614 -> 0.718 weighted F4 on held-out randomized runs). The detector's
# half-width ResNet-18 (its preset) takes a third of the full width's time per step and spends it on 3x the
# patches too (21 minutes for 24 epochs on 2 cores; the U-Net about 13).
DEMO_PATCHES_PER_EPOCH = {"unet": 192, "yolo3d": 192}

# Test-time augmentation of each family when the demo predicts (thresholds tuned on the validation runs with
# it). Flips lifted 7 of the 9 U-Nets tried on the quality benchmark's held-out randomized runs, today's by
# 0.037 and on each of its 3 fitting folds; they lowered the two largest U-Nets, once the demo's own (0.752 ->
# 0.739, a ribosome threshold) and the detector (0.803 -> 0.751): docs/BENCHMARKS.md, "Test-time augmentation".
# The detector preset (half-width ResNet-18) gains from them on both domains: on the mean of 3 fitting runs
# 0.839 -> 0.875 (randomized, every fold) and 0.879 -> 0.887 (fixed), and the ensemble with both flipped is
# ahead of the one with the detector unflipped ("Detector as shipped", "Ensemble across fitting runs").
DEMO_TTA = {"unet": "flips", "yolo3d": "flips"}


def demo_training_config(quick: bool = False, model: str = "unet") -> RunConfig:
    """The demo's recipe for ``model`` (a ``MODEL_PRESETS`` name) on 2 CPU cores (level 1: 20 A voxels).

    The U-Net (the default) trains in about 13 minutes of 24 epochs alone, the detector in about 21.
    """
    if model not in MODEL_PRESETS:
        raise ValueError(f"model {model!r}: must be one of {sorted(MODEL_PRESETS)}")
    config = RunConfig(
        data=DataConfig(level=1),
        patch=PatchConfig(
            size_zyx=(32, 96, 96),
            batch_size=4,
            patches_per_epoch=DEMO_PATCHES_PER_EPOCH.get(model, 64),
            inference_batch_size=4,
        ),
        model=ModelConfig(channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1),
        augment=AugmentConfig(),
        train=TrainConfig(epochs=24, lr=2e-3, warmup_steps=20, num_workers=1),
        postprocess=PostprocessConfig(),
        tracking=TrackingConfig(experiment="cryokit-demo"),
    )
    config = apply_overrides(config, MODEL_PRESETS[model])
    if quick:
        # Maps of a tiny network after 8 epochs are faint specks, not balls: smoothing them sinks their
        # peaks under the candidate floor (quick U-Net 0.09 with smoothing, 0.26 without, 2026-12-06).
        config = replace(
            config,
            patch=replace(config.patch, patches_per_epoch=32),
            model=replace(config.model, channels=(8, 16, 32), strides=(2, 2)),
            train=replace(config.train, epochs=8),
            postprocess=replace(config.postprocess, smooth_sigma_angstrom=0.0),
        )
    return config


@dataclass(frozen=True)
class DemoConfig:
    """What the demo does. ``data_root`` empty: simulate (sizes below); else use that root's train split.

    ``domain`` is the simulator's (``cryokit.synth.SimulationConfig.domain``): ``"randomized"`` (the
    default) draws each run's imaging, clutter and particle variants; ``"fixed"`` is the one simulator of
    before. The quick demo stays on ``"fixed"``: two tiny runs cannot span the family, and its U-Net scored
    0.000 on a held-out randomized run (validation 0.46).
    """

    out_dir: str = "outputs/demo"
    data_root: str = ""
    quick: bool = False
    n_train_runs: int = 4
    n_val_runs: int = 1
    n_heldout_runs: int = 2
    difficulty: str = "default"
    domain: str = "randomized"
    shape_zyx: tuple[int, int, int] = (184, 630, 630)
    seed: int = 0
    training: RunConfig = field(default_factory=demo_training_config)
    # Model families trained (``MODEL_PRESETS`` names, each on ``training`` with its preset applied);
    # with more than one, their calibrated ensemble (``cryokit.ensemble``) is fitted on the validation
    # runs, scored too, and writes the submission.
    models: tuple[str, ...] = ("unet",)
    # Test-time augmentation per family (``cryokit.inference.tta``; a family not named: "none").
    tta: Mapping[str, str] = field(default_factory=lambda: dict(DEMO_TTA))

    @classmethod
    def quick_defaults(cls, **changes) -> DemoConfig:
        """The 3-minute smoke run: smaller volumes, fewer runs, a tiny network for 3 epochs."""
        values = dict(
            quick=True,
            n_train_runs=2,
            n_val_runs=1,
            n_heldout_runs=1,
            shape_zyx=(96, 320, 320),
            domain="fixed",
            training=demo_training_config(quick=True),
            # The tiny network's maps are faint specks after 3 epochs, and averaging flipped passes of them
            # lowered its held-out score (0.264 -> 0.176 on 2026-12-06), as smoothing did.
            tta={},
        )
        values.update(changes)
        return cls(**values)


@dataclass
class DemoResult:
    out_dir: Path
    scores: dict[str, float]
    tables: dict[str, pd.DataFrame]
    files: dict[str, Path]


def _simulate(config: DemoConfig, root: Path) -> tuple[list[str], list[str], list[str]]:
    from cryokit.synth import config_for_difficulty, simulate_dataset

    simulation = config_for_difficulty(
        config.difficulty, shape_zyx=tuple(config.shape_zyx), tomo_types=("denoised",), domain=config.domain
    )
    fitted = simulate_dataset(root, config.n_train_runs + config.n_val_runs, config.seed, "train", simulation)
    heldout = simulate_dataset(root, config.n_heldout_runs, config.seed + 1, "train", simulation)
    return fitted[: config.n_train_runs], fitted[config.n_train_runs :], heldout


def _split_given(config: DemoConfig, root: Path) -> tuple[list[str], list[str], list[str]]:
    runs = list_runs(root, "train")
    needed = config.n_heldout_runs + config.n_val_runs + 1
    if len(runs) < needed:
        raise ValueError(
            f"{root}/train has {len(runs)} runs; the demo needs at least {needed} "
            f"({config.n_heldout_runs} held out, {config.n_val_runs} for validation, 1 to train on)"
        )
    heldout = runs[-config.n_heldout_runs :]
    val = runs[-(config.n_heldout_runs + config.n_val_runs) : -config.n_heldout_runs]
    return runs[: len(runs) - len(heldout) - len(val)], val, heldout


def _baseline(root: Path, train_runs: list[str], heldout: list[str], out_dir: Path) -> pd.DataFrame:
    from cryokit.baseline import BaselineConfig, calibrate, predict

    source = KaggleSource(root, "train")
    calibration = calibrate(source, train_runs, BaselineConfig())
    calibration.table().to_csv(out_dir / "baseline_calibration.csv", index=False)
    return predict(source, calibration, heldout, BaselineConfig())


def _figures(
    root: Path,
    run: str,
    level: int,
    solution: pd.DataFrame,
    picks: dict[str, pd.DataFrame],
    tables: dict[str, pd.DataFrame],
    out_dir: Path,
    label: str = "U-Net",
) -> dict[str, Path]:
    from cryokit.data.normalise import normalise_tomogram
    from cryokit.plots.training import plot_predictions_on_slice, plot_score_comparison

    files = {"scores_png": out_dir / "scores.png", "predictions_png": out_dir / f"predictions_{run}.png"}
    plt.close(plot_score_comparison(tables, files["scores_png"]))
    tomogram = open_run_tomogram(root, "train", run, "denoised", level)
    truth = solution[solution["experiment"] == run]
    predicted = picks[label][picks[label]["experiment"] == run]
    plt.close(
        plot_predictions_on_slice(
            normalise_tomogram(tomogram),
            truth,
            predicted,
            tomogram.voxel_spacing_angstrom_zyx,
            title=f"{run}: {label} picks (x) vs truth (o)",
            path=files["predictions_png"],
        )
    )
    return files


MODEL_LABELS = {"unet": "U-Net", "yolo3d": "YOLO3D detector"}


def _train_each(config: DemoConfig, root: Path, train_runs, val_runs, out_dir: Path) -> dict[str, tuple]:
    """{model: (label, best checkpoint, its configuration)}; the first trains into ``out_dir/train``, others
    into ``out_dir/train_MODEL``."""
    from cryokit.config import MODEL_PRESETS, apply_overrides
    from cryokit.training.loop import fit
    from cryokit.training.tracking import open_tracker

    unknown = [m for m in config.models if m not in MODEL_PRESETS]
    if unknown or not config.models:
        raise ValueError(f"demo models {list(config.models)}: each must be one of {sorted(MODEL_PRESETS)}")
    # The preset the demo's training configuration was made from (preset names and network names differ:
    # the "unet" preset trains a DynUNet).
    base = next((p for p, o in MODEL_PRESETS.items() if o["model.name"] == config.training.model.name), None)
    trained = {}
    for index, model in enumerate(config.models):
        training = config.training
        if training.model.name != MODEL_PRESETS[model]["model.name"]:  # another family: its preset on top
            training = apply_overrides(training, MODEL_PRESETS[model])
            if {model, base} <= set(DEMO_PATCHES_PER_EPOCH):  # and its share of patches
                share = DEMO_PATCHES_PER_EPOCH[model] / DEMO_PATCHES_PER_EPOCH[base]
                patches = max(1, round(training.patch.patches_per_epoch * share))
                training = replace(training, patch=replace(training.patch, patches_per_epoch=patches))
        folder = out_dir / ("train" if index == 0 else f"train_{model}")
        training = replace(
            training,
            data=replace(training.data, root=str(root), train_runs=tuple(train_runs), val_runs=tuple(val_runs)),
            train=replace(training.train, out_dir=str(folder)),
        )
        label = MODEL_LABELS.get(model, model)
        log.info("step 3/5: training the %s on %s, validating on %s", label, train_runs, val_runs)
        track = training.tracking
        with open_tracker(track.enabled, track.tracking_uri, track.experiment, str(folder), f"demo-{model}") as tracker:
            # the demo owns its output folder: a re-run replaces its runs
            trained[model] = (label, fit(training, tracker=tracker, overwrite=True).best_checkpoint, training)
    return trained


def run_demo(config: DemoConfig = DemoConfig()) -> DemoResult:
    """Run every step; returns the scores and the paths of what was written (all under ``out_dir``)."""
    from cryokit.ensemble import ensemble_picks, fit_ensemble, save_ensemble
    from cryokit.inference.predict import group_candidates
    from cryokit.metric import score_table
    from cryokit.postprocess import apply_thresholds
    from cryokit.thresholds import THRESHOLD_SCALE, best_thresholds, save_thresholds

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(config.data_root) if config.data_root else out_dir / "data"
    log.info("step 1/5: data (%s)", "given" if config.data_root else f"simulating into {root}")
    train_runs, val_runs, heldout = _split_given(config, root) if config.data_root else _simulate(config, root)
    solution = read_solution(root, "train", heldout)
    log.info("step 2/5: classical baseline, calibrated on %d training runs", len(train_runs))
    picks = {"DoG baseline": _baseline(root, train_runs, heldout, out_dir)}
    trained = _train_each(config, root, train_runs, val_runs, out_dir)
    log.info("step 4/5: predicting %d held-out runs", len(heldout))
    seconds = {}
    first_label, first_checkpoint, training = next(iter(trained.values()))
    submitted = first_label
    files = {"checkpoint": first_checkpoint, "curves_png": first_checkpoint.parent / "curves.png"}
    # One pass per model over the validation and the held-out runs, each with its family's TTA: its validation
    # candidates tune its thresholds for that TTA (written beside it), its held-out candidates give its own
    # picks and, calibrated, the ensemble's. Models of different kinds are each their own group.
    checkpoints = [str(c) for _, c, _ in trained.values()]
    ttas = [config.tta.get(model, "none") for model in trained]
    val_solution = read_solution(root, "train", val_runs)
    names, val_candidates = group_candidates(checkpoints, str(root), "train", val_runs, ttas)
    _, heldout_candidates = group_candidates(checkpoints, str(root), "train", heldout, ttas)
    for model, (label, _, _), val, held in zip(trained, trained.values(), val_candidates, heldout_candidates):
        # classes the validation runs lack keep the checkpoint's thresholds; tuned ones are lowered for new runs
        thresholds = {**val.attrs["thresholds"], **best_thresholds(val, val_solution, scale=THRESHOLD_SCALE)}
        files[f"thresholds_{model}"] = save_thresholds(out_dir / f"thresholds_{model}.json", thresholds)
        picks[label] = apply_thresholds(held, thresholds, held.attrs["default_threshold"])
        seconds[label] = held.attrs["seconds"]
    if len(trained) > 1:
        ensemble = fit_ensemble(val_candidates, val_solution, names)
        files["ensemble"] = save_ensemble(out_dir / "ensemble.json", ensemble)
        submitted = "ensemble"
        picks[submitted] = apply_thresholds(ensemble_picks(ensemble, heldout_candidates), ensemble.thresholds, 1.0)
    log.info("step 5/5: scoring and plotting")
    tables = {name: score_table(solution, frame) for name, frame in picks.items()}
    files["submission"] = write_submission(picks[submitted], out_dir / "submission.csv")
    files.update(_figures(root, heldout[0], training.data.level, solution, picks, tables, out_dir, first_label))
    scores = {name: float(table.attrs["score"]) for name, table in tables.items()}
    combined = pd.concat([t.assign(method=name) for name, t in tables.items()], ignore_index=True)
    combined.to_csv(out_dir / "scores.csv", index=False)
    files["scores_csv"] = out_dir / "scores.csv"
    summary = {
        "scores": scores,
        "submission": submitted,
        "tta": dict(zip(trained, ttas)),
        "seconds_per_tomogram": seconds[first_label] if len(seconds) == 1 else seconds,
        "train_runs": train_runs,
        "val_runs": val_runs,
        "heldout_runs": heldout,
        "training_config": to_dict(training),
        "training_configs": {model: to_dict(t) for model, (_, _, t) in trained.items()},
    }
    files["summary"] = atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return DemoResult(out_dir, scores, tables, files)
