"""U-Net decoding: how the quality benchmark's U-Net maps become picks, one change at a time, on the same maps.

For each domain's quality U-Net (``benchmarks/quality.py``), predicts the class maps of the validation run
and the 2 held-out runs once (with the demo's TTA), then decodes them with each variant of
``cryokit.tasks.PeakDecoding`` (NMS radius, smoothing, connected components instead of max-pool), tunes
per-class thresholds on the validation run and scores the held-out runs with the competition metric. Since
one validation run is a noisy judge, each variant is also scored on the three folds of these runs (each
run tunes the thresholds in turn, the other two are scored; their mean). Writes the "U-Net decoding"
section of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/unet_decoding.py [--domain randomized fixed] [--out DIR]`` after
``benchmarks/quality.py`` for those domains (minutes).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header  # noqa: E402
from quality import domains_main, simulate_quality_data  # noqa: E402

from cryokit.data.normalise import normalise_tomogram  # noqa: E402
from cryokit.demo.pipeline import DEMO_TTA  # noqa: E402
from cryokit.inference.predict import predict_maps  # noqa: E402
from cryokit.inference.speed import InferenceOptions, prepare_for_inference  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.io.source import KaggleSource  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.postprocess import apply_thresholds  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402
from cryokit.training.checkpoint import load_model  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/unet_decoding.py"
# name -> (what changes, PeakDecoding fields changed against the U-Net preset's decoding)
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("today's preset: max-pool peaks, NMS radius 0.5 r, maps smoothed by a Gaussian of sigma 40 A", {}),
    "nms03": ("NMS radius 0.3 r", {"radius_fraction": 0.3}),
    "nms07": ("NMS radius 0.7 r", {"radius_fraction": 0.7}),
    "smooth0": ("maps not smoothed", {"smooth_sigma_angstrom": 0.0}),
    "smooth60": ("maps smoothed by sigma 60 A", {"smooth_sigma_angstrom": 60.0}),
    "unrefined": ("peaks at the centres of their cells (no sub-cell refinement)", {"refine": False}),
    "components": (
        "connected components above the candidate floor instead of max-pool peaks",
        {"method": "components"},
    ),
}


def candidates_by_variant(checkpoint: Path, root: Path, runs: list[str], tta: str) -> dict[str, pd.DataFrame]:
    """Every candidate of ``runs`` decoded by each variant from the same maps."""
    loaded = load_model(checkpoint)
    model = prepare_for_inference(loaded.model, InferenceOptions())
    source = KaggleSource(root, "train")
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in VARIANTS}
    for run in runs:
        tomogram = source.open_tomogram(run, loaded.tomo_type, loaded.level)
        task = loaded.task
        maps = predict_maps(
            model,
            task.dense_maps,
            normalise_tomogram(tomogram),
            loaded.window,
            task.output_stride,
            task.vector_channels,
            tta,
        )
        for name, (_, changes) in VARIANTS.items():
            variant = copy.copy(task)
            variant.decoding = dataclasses.replace(task.decoding, **changes)
            frames[name].append(variant.decode(maps.clone(), tomogram.voxel_spacing_angstrom_zyx, run))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}


def scores(candidates: pd.DataFrame, root: Path, fit_runs: list[str], scored_runs: list[str]) -> pd.DataFrame:
    """Per-class F4 (and ``attrs["score"]``) on ``scored_runs`` with thresholds tuned on ``fit_runs``."""
    thresholds = best_thresholds(
        candidates[candidates["experiment"].isin(fit_runs)], read_solution(root, "train", fit_runs)
    )
    return score_table(
        read_solution(root, "train", scored_runs),
        apply_thresholds(candidates[candidates["experiment"].isin(scored_runs)], thresholds, 1.0),
    )


def domain_rows(out: Path, domain: str) -> list[dict]:
    root, runs = simulate_quality_data(out, domain=domain)
    checkpoint = out / f"unet_{domain}" / "best.pt"
    if not checkpoint.is_file():
        raise SystemExit(f"no quality-benchmark U-Net at {checkpoint}: run benchmarks/quality.py first")
    every = runs["val"] + runs["heldout"]
    rows = []
    for name, candidates in candidates_by_variant(checkpoint, root, every, DEMO_TTA["unet"]).items():
        table = scores(candidates, root, runs["val"], runs["heldout"]).set_index("particle_type")
        folds = [scores(candidates, root, [fit], [r for r in every if r != fit]).attrs["score"] for fit in every]
        rows.append(
            {
                "domain": domain,
                "variant": name,
                **{p: table.loc[p, "fbeta"] for p in SCORED_PARTICLE_NAMES},
                "weighted F4": table.attrs["score"],
                "folds": folds,
            }
        )
    return rows


def report(rows: list[dict], domains: list[str], seconds: float) -> str:
    lines = [
        "| domain | variant | change | " + " | ".join(SCORED_PARTICLE_NAMES) + " | weighted F4 | fold mean (3 folds) |",
        "|---|---|---|" + "---:|" * (len(SCORED_PARTICLE_NAMES) + 2),
    ]
    for row in rows:
        per_class = " | ".join(f"{row[p]:.3f}" for p in SCORED_PARTICLE_NAMES)
        folds = " / ".join(f"{f:.3f}" for f in row["folds"])
        lines.append(
            f"| {row['domain']} | `{row['variant']}` | {VARIANTS[row['variant']][0]} | {per_class} | "
            f"**{row['weighted F4']:.3f}** | {np.mean(row['folds']):.3f} ({folds}) |"
        )
    return "\n".join(
        [
            *report_header(f"{COMMAND} --domain {' '.join(domains)}", date_note=f"{seconds / 60:.0f} minutes in all"),
            "",
            "Each domain's quality-benchmark U-Net (`benchmarks/quality.py`), its maps predicted once with the "
            f"demo's TTA ({DEMO_TTA['unet']}) and decoded by each variant (`cryokit.tasks.PeakDecoding`, one "
            "change against the preset's). Weighted F4 on the 2 held-out runs with thresholds tuned on the "
            "validation run (per class beside it), and the mean over the three folds of these runs (each run "
            "tunes the thresholds in turn, the other two are scored):",
            "",
            *lines,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return domains_main(argv, __doc__.splitlines()[0], domain_rows, report, "U-Net decoding")


if __name__ == "__main__":
    sys.exit(main())
