"""Threshold scale: how far to lower thresholds tuned on one run before they are used on others.

F4 counts a missed particle 16 times a false one, so on runs a threshold was not tuned on, one a little too
high costs far more than one a little too low. Here every model of the quality benchmarks that is on disk
(the quality U-Net with flips TTA and detector without, on both simulated domains, and the other training
seeds of today's presets from ``benchmarks/unet_experiments.py``) is scored as in "Ensemble across fitting
runs": each run the models never trained on tunes the thresholds in turn (``best_thresholds(..., scale=s)``:
the optimum times ``s``), the other two are scored. Scale 1 is the benchmarks' protocol (the validation
optimum), ``cryokit.thresholds.THRESHOLD_SCALE`` what training, the demo and ``cryokit ensemble`` save.
Writes the section "Threshold scale" of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/threshold_scale.py [--quality-out DIR]`` after ``benchmarks/quality.py``
on both domains (about 5 minutes on 2 CPU cores: every model predicts its three runs once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _candidates import candidates_by_run  # noqa: E402
from _report import report_header, update_section  # noqa: E402
from quality import unseen_runs  # noqa: E402
from unet_seed_ensemble import alone_scores  # noqa: E402

from cryokit.demo.pipeline import DEMO_TTA  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.thresholds import THRESHOLD_SCALE  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/threshold_scale.py"
SCALES = (1.0, 0.9, 0.8, 0.7)
# label: (domain, checkpoint under the quality output folder, family for the demo's TTA)
MODELS = {
    "U-Net, randomized (quality)": ("randomized", "unet_randomized/best.pt", "unet"),
    "U-Net seed 1, randomized": ("randomized", "experiments_randomized/default_dynunet_seed1/best.pt", "unet"),
    "U-Net deep supervision, randomized": ("randomized", "experiments_randomized/default_dynunet_ds2/best.pt", "unet"),
    "U-Net, fixed (quality)": ("fixed", "unet_fixed/best.pt", "unet"),
    "detector, randomized (quality)": ("randomized", "experiments_randomized_detector/w32_p192/best.pt", "yolo3d"),
    "detector seed 1, randomized": ("randomized", "experiments_randomized_detector/w32_p192_seed1/best.pt", "yolo3d"),
    "detector, fixed (quality)": ("fixed", "yolo3d_fixed/best.pt", "yolo3d"),
    # The preset before `w32_p192` (full-width backbone, 64 patches per epoch), three seeds.
    "detector centre1, randomized": ("randomized", "experiments_randomized_detector/centre1/best.pt", "yolo3d"),
    "detector centre1 seed 1, randomized": (
        "randomized",
        "experiments_randomized_detector/centre1_seed1/best.pt",
        "yolo3d",
    ),
    "detector centre1 seed 2, randomized": (
        "randomized",
        "experiments_randomized_detector/centre1_seed2/best.pt",
        "yolo3d",
    ),
}


def fold_scores(by_run: dict[str, pd.DataFrame], solutions: dict[str, pd.DataFrame], scale: float) -> list[float]:
    """Weighted F4 on the other runs with thresholds tuned on each run in turn and multiplied by ``scale``."""
    return [alone_scores({"model": by_run}, solutions, fit_run, scale)["model"] for fit_run in by_run]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    rows, folds = {}, {}
    for label, (domain, checkpoint, family) in MODELS.items():
        path = args.quality_out / checkpoint
        if not path.is_file():
            print(f"skipping {label}: no {path}")
            continue
        root, runs = unseen_runs(args.quality_out, domain)
        by_run = candidates_by_run([path], root, runs, DEMO_TTA[family])
        solutions = {run: read_solution(root, "train", [run]) for run in runs}
        folds[label] = {scale: fold_scores(by_run, solutions, scale) for scale in SCALES}
        rows[label] = {scale: float(np.mean(f)) for scale, f in folds[label].items()}
        print(label, {s: round(v, 3) for s, v in rows[label].items()}, flush=True)
    if not rows:
        raise SystemExit(f"no quality models under {args.quality_out}: run benchmarks/quality.py first")
    header = " | ".join(f"scale {s:g}" for s in SCALES)
    lines = [
        *report_header(COMMAND),
        "",
        "Thresholds tuned on one run the models never trained on, multiplied by the scale, the other two runs "
        "scored; the mean weighted F4 of the three fitting runs (the first fitting run, the validation run, is "
        f"the quality benchmark's split). Each model with the demo's TTA (U-Nets {DEMO_TTA['unet']}, detectors "
        f"{DEMO_TTA['yolo3d']}). "
        f"`cryokit.thresholds.THRESHOLD_SCALE` is {THRESHOLD_SCALE:g}.",
        "",
        f"| model | {header} |",
        "|---|" + "---:|" * len(SCALES),
        *(f"| {label} | " + " | ".join(f"{row[s]:.3f}" for s in SCALES) + " |" for label, row in rows.items()),
    ]
    mean = {s: float(np.mean([row[s] for row in rows.values()])) for s in SCALES}
    lines.append("| **mean** | " + " | ".join(f"**{mean[s]:.3f}**" for s in SCALES) + " |")
    # Against scale 1 (the validation optimum): models (mean of their folds) and single folds higher / lower.
    by_model = {s: np.array([rows[m][s] - rows[m][1.0] for m in rows]) for s in SCALES}
    by_fold = {s: np.concatenate([np.subtract(folds[m][s], folds[m][1.0]) for m in rows]) for s in SCALES}

    def summary(label, cell):
        return f"| {label} | " + " | ".join("" if s == 1.0 else cell(s) for s in SCALES) + " |"

    lines += [
        summary(
            "models higher / lower than scale 1",
            lambda s: f"{(by_model[s] > 5e-4).sum()} / {(by_model[s] < -5e-4).sum()}",
        ),
        summary(
            "folds higher / lower than scale 1", lambda s: f"{(by_fold[s] > 5e-4).sum()} / {(by_fold[s] < -5e-4).sum()}"
        ),
        summary("worst / best fold against scale 1", lambda s: f"{by_fold[s].min():+.3f} / {by_fold[s].max():+.3f}"),
    ]
    body = "\n".join(lines)
    print(body)
    update_section("Threshold scale", body, keep_notes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
