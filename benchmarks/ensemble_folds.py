"""Does the calibrated ensemble hold up when fitted on another run? Rotate the fitting run.

The quality benchmark fits thresholds and the ensemble on one validation run and scores two held-out runs;
on the randomized simulator every run is its own imaging domain, so one run decides a lot. Here each of
the three runs the models never trained on (the validation run and the two held-out runs) serves in turn
as the fitting run, and the other two are scored: each model alone (thresholds tuned on the fitting run),
the raw-score merge, the choice per class of ``cryokit.ensemble.fit_ensemble(vote=False)`` (isotonic
calibration, ``min_gain_references`` 2) and the same with 0 (a class follows whichever choice scores higher
on the fitting run), the raw merge where it ties or beats the lead on the fitting run, and the default
ensemble (the peers' vote); then the U-Net predicted with flips TTA, alone and in the default ensemble with
the unflipped detector; then the detector flipped too (both as the demo predicts them), alone and in the
default ensemble with the flipped U-Net.
Reuses the models and data of ``benchmarks/quality.py --domain DOMAIN`` (run that first). Writes the section
"Ensemble across fitting runs (DOMAIN simulator)" of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/ensemble_folds.py [--domain randomized] [--quality-out DIR]`` (minutes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _candidates import run_candidates  # noqa: E402
from _report import report_header, update_section  # noqa: E402
from quality import unseen_runs  # noqa: E402

from cryokit.ensemble import DEFAULT_MIN_GAIN_REFERENCES, ensemble_picks, fit_ensemble  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import COMPETITION_CATALOG  # noqa: E402
from cryokit.postprocess import apply_thresholds, merge_picks  # noqa: E402
from cryokit.thresholds import best_thresholds, threshold_curves  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/ensemble_folds.py"
METHODS = (
    "U-Net",
    "YOLO3D detector",
    "raw scores averaged",
    "choice per class, any validation gain",
    f"choice per class (gain > {DEFAULT_MIN_GAIN_REFERENCES:g} references)",
    "raw merge where it ties or beats the lead (per class)",
    "cryokit ensemble (vote)",
)
# The U-Net flipped, alone and in the default ensemble with the detector unflipped (the demo's TTA until the
# fourth change of 2026-12-07); then both members flipped (the demo's since, cryokit.demo.pipeline.DEMO_TTA):
# the detector alone and the default ensemble.
TTA_METHODS = ("U-Net, flips TTA", "cryokit ensemble, U-Net with flips TTA")
BOTH_FLIPPED_METHODS = ("YOLO3D detector, flips TTA", "cryokit ensemble, both with flips TTA")


def merge_where_no_worse(fit_members, fit_solution, members):
    """Per class, the raw-score merge where its F4 on the fitting run is at least the lead member's, else the
    lead alone (the lead: best weighted F4 on the fitting run); thresholds tuned on the fitting run."""
    curves = [threshold_curves(m, fit_solution) for m in fit_members]
    merged_curves = threshold_curves(merge_picks(fit_members, 0.5), fit_solution)
    classes = list(merged_curves)
    totals = [sum(COMPETITION_CATALOG.get(n).weight * c[n].best()[1] for n in classes if n in c) for c in curves]
    lead = int(np.argmax(totals))

    def picks(frames):
        merged, chosen = merge_picks(frames, 0.5), []
        for name in classes:
            use_merge = merged_curves[name].best()[1] >= curves[lead][name].best()[1] if name in curves[lead] else True
            source = merged if use_merge else frames[lead]
            chosen.append(source[source["particle_type"] == name])
        return pd.concat(chosen, ignore_index=True)

    return picks(members), best_thresholds(picks(fit_members), fit_solution)


def fold(candidates: dict[str, list[pd.DataFrame]], solutions: dict[str, pd.DataFrame], fit_run: str):
    """(each member's candidates on every run but ``fit_run``, their solution, each member's candidates on
    ``fit_run``, its solution)."""
    test = [r for r in candidates if r != fit_run]
    solution = pd.concat([solutions[r] for r in test], ignore_index=True)
    members = [pd.concat([candidates[r][i] for r in test], ignore_index=True) for i in range(2)]
    return members, solution, candidates[fit_run], solutions[fit_run]


def fold_scores(candidates: dict[str, list[pd.DataFrame]], solutions: dict[str, pd.DataFrame], fit_run: str) -> dict:
    """Weighted F4 on every run but ``fit_run`` of each method fitted on ``fit_run``."""
    members, solution, fit_members, fit_solution = fold(candidates, solutions, fit_run)

    def scored(picks):
        return float(score_table(solution, picks).attrs["score"])

    row = {}
    for i, method in enumerate(METHODS[:2]):
        row[method] = scored(apply_thresholds(members[i], best_thresholds(fit_members[i], fit_solution), 1.0))
    raw = best_thresholds(merge_picks(fit_members, 0.5), fit_solution)
    row[METHODS[2]] = scored(apply_thresholds(merge_picks(members, 0.5), raw, 1.0))
    names = list(METHODS[:2])  # the members, in the order of the candidates
    for method, references in zip(METHODS[3:5], (0.0, DEFAULT_MIN_GAIN_REFERENCES)):
        ensemble = fit_ensemble(
            fit_members, fit_solution, names, min_gain_references=references, vote=False, threshold_scale=1.0
        )
        row[method] = scored(apply_thresholds(ensemble_picks(ensemble, members), ensemble.thresholds, 1.0))
    picks, thresholds = merge_where_no_worse(fit_members, fit_solution, members)
    row[METHODS[5]] = scored(apply_thresholds(picks, thresholds, 1.0))
    ensemble = fit_ensemble(fit_members, fit_solution, names, threshold_scale=1.0)
    row[METHODS[6]] = scored(apply_thresholds(ensemble_picks(ensemble, members), ensemble.thresholds, 1.0))
    return row


def tta_fold_scores(candidates: dict[str, list[pd.DataFrame]], solutions, fit_run: str) -> tuple[float, ...]:
    """Weighted F4 on every run but ``fit_run`` of the U-Net alone, the detector alone and the default ensemble,
    fitted on ``fit_run``; candidates per run are [U-Net, detector], each with the TTA it was predicted with."""
    members, solution, fit_members, fit_solution = fold(candidates, solutions, fit_run)
    alone = [apply_thresholds(m, best_thresholds(f, fit_solution), 1.0) for m, f in zip(members, fit_members)]
    ensemble = fit_ensemble(fit_members, fit_solution, list(METHODS[:2]), threshold_scale=1.0)
    merged = apply_thresholds(ensemble_picks(ensemble, members), ensemble.thresholds, 1.0)
    return tuple(float(score_table(solution, p).attrs["score"]) for p in (*alone, merged))


def fold_table(rows: dict[str, dict[str, float]], columns) -> list[str]:
    """Markdown table lines: one row of weighted F4 per fitting run (``rows[run][column]``), then their mean."""
    mean = {c: sum(r[c] for r in rows.values()) / len(rows) for c in columns}
    return [
        "| fitted on | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        *(f"| {run} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |" for run, row in rows.items()),
        "| **mean** | " + " | ".join(f"**{mean[c]:.3f}**" for c in columns) + " |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="randomized", choices=["fixed", "randomized"])
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    root, runs = unseen_runs(args.quality_out, args.domain)
    checkpoints = [str(args.quality_out / f"{m}_{args.domain}" / "best.pt") for m in ("unet", "yolo3d")]
    candidates = {run: [run_candidates([c], root, run, "none") for c in checkpoints] for run in runs}
    solutions = {run: read_solution(root, "train", [run]) for run in runs}
    # The U-Net flipped, the detector's candidates as above (no TTA); then the detector flipped as well.
    flipped = {run: [run_candidates([c], root, run, "flips") for c in checkpoints] for run in runs}
    unet_flipped = {run: [flipped[run][0], candidates[run][1]] for run in runs}
    rows = {}
    for run in runs:
        unet_alone, _, unet_ensemble = tta_fold_scores(unet_flipped, solutions, run)
        _, detector_alone, both_ensemble = tta_fold_scores(flipped, solutions, run)
        rows[run] = {
            **fold_scores(candidates, solutions, run),
            **dict(zip(TTA_METHODS, (unet_alone, unet_ensemble))),
            **dict(zip(BOTH_FLIPPED_METHODS, (detector_alone, both_ensemble))),
        }
    columns = METHODS + TTA_METHODS + BOTH_FLIPPED_METHODS
    lines = [
        *report_header(f"{COMMAND} --domain {args.domain}"),
        "",
        f"The models of `benchmarks/quality.py --domain {args.domain}`; each of the runs they never trained on "
        f"({', '.join(runs)}) fits the thresholds (and the ensemble) in turn, the other two are scored. "
        "Weighted F4 (no TTA unless a column names it):",
        "",
        *fold_table(rows, columns),
    ]
    body = "\n".join(lines)
    print(body)
    update_section(f"Ensemble across fitting runs ({args.domain} simulator)", body, keep_notes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
