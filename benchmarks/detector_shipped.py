"""The detector as it ships: test-time flips and lowered thresholds, over training seeds and fitting runs.

The detector experiments of ``benchmarks/unet_experiments.py --family detector`` measure the preset without
TTA at the validation optimum (the benchmarks' protocol). What a user submits is predicted with the demo's TTA
(``cryokit.demo.pipeline.DEMO_TTA``) and thresholded at the optimum times ``THRESHOLD_SCALE``. Here the
preset's training seeds (``SEEDS``, those on disk) are scored in all four combinations, each of the runs the
models never trained on tuning the thresholds in turn and the other two scored (as in "Ensemble across
fitting runs"), with the per-class F4 of the shipped setting beside the DoG baseline's on the same runs.
Writes the section "Detector as shipped (DOMAIN simulator)" of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/detector_shipped.py [--domain randomized]`` after ``benchmarks/quality.py``
and the seeds' experiments (about 5 minutes per seed on 2 CPU cores: the flipped passes are 8 per run).
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
from quality import experiments_folder, simulate_quality_data  # noqa: E402
from unet_seed_ensemble import fit_run_table  # noqa: E402

from cryokit.demo.pipeline import DEMO_TTA, _baseline  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.thresholds import THRESHOLD_SCALE  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/detector_shipped.py"
# Training seed -> the detector experiment of today's preset trained with it.
SEEDS = {"seed 0": "w32_p192", "seed 1": "w32_p192_seed1", "seed 2": "w32_p192_seed2"}
SETTINGS = (("none", 1.0), ("none", THRESHOLD_SCALE), ("flips", 1.0), ("flips", THRESHOLD_SCALE))
SHIPPED = (DEMO_TTA["yolo3d"], THRESHOLD_SCALE)


def per_class(tables: list[pd.DataFrame]) -> dict[str, float]:
    """Per scored class, the mean F4 over ``tables``."""
    return {
        n: float(np.mean([t.set_index("particle_type").loc[n, "fbeta"] for t in tables])) for n in SCORED_PARTICLE_NAMES
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="randomized", choices=["fixed", "randomized"])
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    root, split = simulate_quality_data(args.quality_out, domain=args.domain)  # reads runs.json when it is there
    runs = split["val"] + split["heldout"]
    experiments = args.quality_out / experiments_folder(args.domain, "detector")
    seeds = {label: experiments / name / "best.pt" for label, name in SEEDS.items()}
    seeds = {label: path for label, path in seeds.items() if path.is_file()}
    if not seeds:
        raise SystemExit(f"no detector of {list(SEEDS.values())} under {experiments}: run unet_experiments.py first")
    solutions = {run: read_solution(root, "train", [run]) for run in runs}
    rows = {}  # (label, setting) -> the fold tables
    for label, checkpoint in seeds.items():
        candidates = {tta: candidates_by_run([checkpoint], root, runs, tta) for tta in {t for t, _ in SETTINGS}}
        for tta, scale in SETTINGS:
            # One score table per fitting run.
            rows[label, (tta, scale)] = [fit_run_table(candidates[tta], solutions, r, scale) for r in runs]
            print(label, tta, scale, round(float(np.mean([t.attrs["score"] for t in rows[label, (tta, scale)]])), 3))
    # The baseline calibrates on the training runs, so its picks do not depend on the fitting run.
    baseline = _baseline(root, split["train"], runs, args.quality_out)
    baseline_tables = [
        score_table(
            pd.concat([solutions[r] for r in runs if r != fit_run], ignore_index=True),
            baseline[baseline["experiment"] != fit_run],
        )
        for fit_run in runs
    ]
    names = SCORED_PARTICLE_NAMES

    def line(method: str, tables: list[pd.DataFrame], bold: bool = False) -> str:
        f4 = per_class(tables)
        score = float(np.mean([t.attrs["score"] for t in tables]))
        cells = [f"{f4[n]:.3f}" for n in names] + [f"**{score:.3f}**" if bold else f"{score:.3f}"]
        return f"| {method} | " + " | ".join(cells) + " |"

    table = ["| detector | " + " | ".join(names) + " | weighted F4 |", "|---|" + "---:|" * (len(names) + 1)]
    for tta, scale in SETTINGS:
        setting = f"{tta} TTA, thresholds x{scale:g}" + (" (shipped)" if (tta, scale) == SHIPPED else "")
        table += [line(f"{label}, {setting}", rows[label, (tta, scale)]) for label in seeds]
        if len(seeds) > 1:
            every = [t for label in seeds for t in rows[label, (tta, scale)]]
            table.append(line(f"**mean of {len(seeds)} seeds, {setting}**", every, bold=True))
    table.append(line("DoG baseline", baseline_tables, bold=True))
    lines = [
        *report_header(f"{COMMAND} --domain {args.domain}"),
        "",
        f"Today's detector preset (`w32_p192`) with each training seed on disk, {args.domain} simulator. Each of "
        f"the runs the models never trained on ({', '.join(runs)}) tunes the thresholds in turn (the optimum times "
        "the scale), the other two are scored; per-class and weighted F4 are means over the three fitting runs "
        f"(and the seeds, in a bold row). The demo ships {SHIPPED[0]} TTA and x{SHIPPED[1]:g}. The DoG baseline "
        "calibrates on the training runs and is scored on the same pairs of runs:",
        "",
        *table,
    ]
    body = "\n".join(lines)
    print(body)
    update_section(f"Detector as shipped ({args.domain} simulator)", body, keep_notes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
