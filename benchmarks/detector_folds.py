"""Detector variants over training seeds and fitting runs: how much of a variant's gain is the variant?

One held-out score per variant (``benchmarks/unet_experiments.py --family detector``) mixes the variant with
its training seed and with the one validation run that tunes its thresholds. Here the detector experiments
of ``GROUPS`` (the presets of before and of today with two or three training seeds, a seed pair averaged map
by map as ``cryokit predict`` does with several checkpoints of one kind, and variants of one seed) are
scored as in "Ensemble across fitting runs": each of the runs the models never trained on tunes the
thresholds in turn, the other two are scored. The detectors
predict without TTA, the protocol their table was measured with (``benchmarks/detector_shipped.py`` scores
today's preset with the demo's TTA and thresholds). Writes the section "Detector variants across seeds and fitting runs
(DOMAIN simulator)" of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/detector_folds.py [--domain randomized]`` after the experiments it names
(``own_cell`` is the detector preset of before 2026-12-07: copy that quality run there; about 15 minutes on
2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402
from ensemble_folds import fold_table  # noqa: E402
from quality import experiments_folder, unseen_runs  # noqa: E402
from unet_seed_ensemble import alone_scores, experiment_candidates  # noqa: E402

from cryokit.io import read_solution  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/detector_folds.py"
TTA = "none"  # every row of the table was measured without TTA; detector_shipped.py has the demo's
# Each group: its label and the detector experiments (benchmarks/unet_experiments.py) averaged in it.
GROUPS = {
    "own_cell, seed 0": ("own_cell",),
    "own_cell, seed 1": ("seed1",),
    "own_cell, seeds averaged": ("own_cell", "seed1"),
    "centre1, seed 0": ("centre1",),
    "centre1, seed 1": ("centre1_seed1",),
    "centre1, seeds averaged": ("centre1", "centre1_seed1"),
    "centre1, seed 2": ("centre1_seed2",),
    "centre15, seed 0": ("centre15",),
    "stride2, seed 0": ("stride2",),
    "one_anchor, seed 0": ("one_anchor",),
    "w32_p192, seed 0": ("w32_p192",),
    "w32_p192, seed 1": ("w32_p192_seed1",),
    "w16_p384, seed 0": ("w16_p384",),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="randomized", choices=["fixed", "randomized"])
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    out = args.quality_out
    root, runs = unseen_runs(out, args.domain)
    experiments = out / experiments_folder(args.domain, "detector")
    candidates = experiment_candidates(GROUPS, experiments, root, runs, TTA)
    solutions = {run: read_solution(root, "train", [run]) for run in runs}
    rows = {fit_run: alone_scores(candidates, solutions, fit_run) for fit_run in runs}
    lines = [
        *report_header(f"{COMMAND} --domain {args.domain}"),
        "",
        f"Detectors of `benchmarks/unet_experiments.py --family detector` ({args.domain} simulator, "
        f"{TTA} TTA): `own_cell` (each particle a positive on its own cell, the preset until "
        "2026-12-07) and `centre1` (centre sampling, the preset after it), each with training seeds 0 and 1 and "
        "the two seeds averaged map by map, and `centre1` with seed 2; `centre15` (centre sampling within 1.5 "
        "cells), `stride2` (`centre1` at output stride 2) and `one_anchor` (`centre1` with one anchor for every "
        "class), seed 0; `w32_p192` (`centre1` on a half-width ResNet-18 with 192 patches per epoch, today's "
        "preset), seeds 0 and 1; `w16_p384` (a quarter of the width, 384 patches per epoch), seed 0. Each of the "
        "runs the models never trained on "
        f"({', '.join(runs)}) tunes the thresholds in turn, the other two are scored. Weighted F4:",
        "",
        *fold_table(rows, list(GROUPS)),
    ]
    body = "\n".join(lines)
    print(body)
    update_section(f"Detector variants across seeds and fitting runs ({args.domain} simulator)", body, keep_notes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
