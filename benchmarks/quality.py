"""Quality on simulated data: the U-Net, the YOLO-style detector, their ensemble and the DoG baseline.

Simulates training runs and one validation run (seed 0) and held-out runs (seed 1) at the default
difficulty, trains both model tracks with the CPU-friendly demo configuration (level 1, 20 A voxels),
tunes per-class thresholds on the validation run (each model's own, and the ensemble's on its merged
scores), and scores the held-out runs with the competition metric next to the classical baseline
calibrated on the training runs. Writes the "Quality" section of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/quality.py [--epochs N] [--out DIR]`` (about an hour on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, update_section  # noqa: E402

from cryokit.config import MODEL_PRESETS, apply_overrides, replace  # noqa: E402
from cryokit.demo.pipeline import DemoConfig, _baseline, _simulate, demo_training_config  # noqa: E402
from cryokit.ensemble import ensemble_picks, fit_ensemble  # noqa: E402
from cryokit.inference.predict import group_candidates, predict_runs  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.io.atomic import atomic_write_text  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.postprocess import apply_thresholds  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402
from cryokit.training.loop import fit  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/quality.py"


def simulate_quality_data(
    out: Path, train_runs: int = 4, heldout_runs: int = 2, domain: str = "fixed"
) -> tuple[Path, dict[str, list[str]]]:
    """The benchmark's runs under ``out/data`` (``out/data_randomized`` for that domain; simulated once,
    ``runs.json`` there names the split)."""
    root = out / ("data" if domain == "fixed" else f"data_{domain}")
    split_file = root / "runs.json"
    if split_file.is_file():
        runs = json.loads(split_file.read_text())
        if len(runs["train"]) == train_runs and len(runs["heldout"]) == heldout_runs:
            return root, runs
    demo = DemoConfig(out_dir=str(out), n_train_runs=train_runs, n_heldout_runs=heldout_runs, domain=domain)
    train, val, heldout = _simulate(demo, root)
    runs = {"train": train, "val": val, "heldout": heldout}
    atomic_write_text(split_file, json.dumps(runs))
    return root, runs


def train_model(
    name: str, preset: str, root: Path, train_runs, val_runs, out: Path, epochs: int, overrides=None
) -> Path:
    """Train ``preset`` of the demo configuration (plus ``overrides``) into ``out/name``; the best checkpoint."""
    config = apply_overrides(
        demo_training_config(),
        {
            **MODEL_PRESETS[preset],
            "data.root": str(root),
            "data.train_runs": list(train_runs),
            "data.val_runs": list(val_runs),
            "train.epochs": epochs,
            "train.out_dir": str(out / name),
            "tracking.enabled": False,
        },
    )
    if preset == "yolo3d":  # the backbone's stride is 8: patches of whole cells
        config = replace(config, patch=replace(config.patch, size_zyx=(32, 96, 96)))
    config = apply_overrides(config, overrides or {})
    return fit(config, overwrite=True).best_checkpoint  # a benchmark re-run retrains from scratch


def scored(checkpoints: list[Path], root: Path, runs, thresholds=None) -> pd.DataFrame:
    picks, _ = predict_runs([str(c) for c in checkpoints], str(root), "train", list(runs), keep_scores=True)
    return picks if thresholds is None else apply_thresholds(picks, thresholds, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_quality"))
    parser.add_argument("--train-runs", type=int, default=4)
    parser.add_argument("--heldout-runs", type=int, default=2)
    parser.add_argument("--domain", default="fixed", choices=["fixed", "randomized"], help="the simulator's domain")
    parser.add_argument("--unet", action="append", default=[], metavar="KEY=VALUE", help="U-Net override (repeat)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root, runs = simulate_quality_data(args.out, args.train_runs, args.heldout_runs, args.domain)
    train_runs, val_runs, heldout = runs["train"], runs["val"], runs["heldout"]
    solution, val_solution = read_solution(root, "train", heldout), read_solution(root, "train", val_runs)
    picks = {"DoG baseline": _baseline(root, train_runs, heldout, args.out)}
    unet = list(args.unet)
    checkpoints = {
        "U-Net": train_model("U-Net", "unet", root, train_runs, val_runs, args.out, args.epochs, unet),
        "YOLO3D detector": train_model("YOLO3D detector", "yolo3d", root, train_runs, val_runs, args.out, args.epochs),
    }
    for name, checkpoint in checkpoints.items():
        thresholds = best_thresholds(scored([checkpoint], root, val_runs), val_solution)
        picks[name] = scored([checkpoint], root, heldout, thresholds)
    both = [str(c) for c in checkpoints.values()]  # different tasks: merged pick by pick
    picks["ensemble, raw scores averaged"] = scored(
        both, root, heldout, best_thresholds(scored(both, root, val_runs), val_solution)
    )
    # Calibrated per class on the validation run, members weighted by validation F4 (cryokit.ensemble).
    names, val_candidates = group_candidates(both, str(root), "train", val_runs)
    ensemble = fit_ensemble(val_candidates, val_solution, names)
    _, heldout_candidates = group_candidates(both, str(root), "train", heldout)
    picks["ensemble, calibrated (cryokit ensemble)"] = apply_thresholds(
        ensemble_picks(ensemble, heldout_candidates), ensemble.thresholds, 1.0
    )
    tables = {name: score_table(solution, frame) for name, frame in picks.items()}
    body = _report(tables, args, time.perf_counter() - start, train_runs, val_runs, heldout)
    print(body)
    update_section("Quality" if args.domain == "fixed" else f"Quality ({args.domain} simulator)", body)
    return 0


def _report(tables, args, seconds, train_runs, val_runs, heldout) -> str:
    names = [n for n in tables[next(iter(tables))]["particle_type"] if n != "beta-amylase"]
    lines = ["| method | " + " | ".join(names) + " | weighted F4 |", "|---|" + "---:|" * (len(names) + 1)]
    for method, table in tables.items():
        f4 = table.set_index("particle_type")["fbeta"]
        lines.append(
            f"| {method} | " + " | ".join(f"{f4[n]:.3f}" for n in names) + f" | **{table.attrs['score']:.3f}** |"
        )
    return "\n".join(
        [
            f"- Command: `{COMMAND} --epochs {args.epochs} --domain {args.domain}`",
            f"- Machine: {machine_description()}",
            f"- Date: {datetime.date.today().isoformat()}; {seconds / 60:.0f} minutes in all",
            "",
            f"Simulated default difficulty, 184 x 630 x 630 voxels: trained on {len(train_runs)} runs, thresholds "
            f"tuned on {len(val_runs)} validation run, scored on {len(heldout)} held-out runs ({', '.join(heldout)}) "
            f"with the competition metric. Both networks at level 1 (20 A voxels), {args.epochs} epochs of the demo "
            "configuration on CPU. Per-class F4 (beta-amylase is unscored):",
            "",
            *lines,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
