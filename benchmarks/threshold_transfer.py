"""Threshold transfer: how much of the held-out score the thresholds tuned on one validation run leave behind.

For the quality benchmark's models (its U-Net with the demo's TTA, its detector, and their fitted ensemble),
tunes per-class thresholds (the ensemble: calibration, weights and thresholds) on

- the validation run (the benchmark's protocol, as in "Quality"),
- 3 more runs drawn like the split's (seed 2, never trained or validated on),
- both together (4 runs),
- the held-out runs themselves: an upper bound no protocol reaches, what the model is worth if its
  thresholds were perfect for these runs,

and scores the 2 held-out runs with the competition metric. The first three rows tell whether the models
need more tuning runs; the gap to the last one is what any threshold rule could still win. Writes the
"Threshold transfer" section of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/threshold_transfer.py [--domain randomized fixed] [--out DIR]`` after
``benchmarks/quality.py`` for those domains (minutes: predicting 6 runs per model).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header  # noqa: E402
from quality import TUNING_SEED, domains_main, more_runs, simulate_quality_data  # noqa: E402

from cryokit.demo.pipeline import DEMO_TTA  # noqa: E402
from cryokit.ensemble import ensemble_picks, fit_ensemble  # noqa: E402
from cryokit.inference.predict import group_candidates  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.postprocess import apply_thresholds  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/threshold_transfer.py"
N_TUNING_RUNS = 3


def transfer_rows(out: Path, domain: str) -> list[dict]:
    """One row per (model, tuning runs): held-out weighted F4 and per-class F4."""
    root, runs = simulate_quality_data(out, domain=domain)
    tuning = more_runs(root, N_TUNING_RUNS, TUNING_SEED, domain)
    checkpoints = [str(out / f"{preset}_{domain}" / "best.pt") for preset in ("unet", "yolo3d")]
    missing = [c for c in checkpoints if not Path(c).is_file()]
    if missing:
        raise SystemExit(f"no quality-benchmark model at {', '.join(missing)}: run benchmarks/quality.py first")
    ttas = [DEMO_TTA["unet"], DEMO_TTA["yolo3d"]]
    every = runs["val"] + tuning + runs["heldout"]
    names, candidates = group_candidates(checkpoints, str(root), "train", every, ttas)
    tuning_sets = {
        "validation run (the benchmark's protocol)": runs["val"],
        f"{N_TUNING_RUNS} more runs (seed {TUNING_SEED})": tuning,
        f"validation run + {N_TUNING_RUNS} more": runs["val"] + tuning,
        "held-out runs themselves (upper bound)": runs["heldout"],
    }
    solution = read_solution(root, "train", runs["heldout"])
    labels = [f"U-Net, {ttas[0]} TTA", "YOLO3D detector", "cryokit ensemble"]
    rows = []
    for tuned_on, tuning_runs in tuning_sets.items():
        tuning_solution = read_solution(root, "train", tuning_runs)
        on = [c[c["experiment"].isin(tuning_runs)] for c in candidates]
        heldout = [c[c["experiment"].isin(runs["heldout"])] for c in candidates]
        picks = [apply_thresholds(h, best_thresholds(t, tuning_solution), 1.0) for t, h in zip(on, heldout)]
        ensemble = fit_ensemble(on, tuning_solution, names, threshold_scale=1.0)
        picks.append(apply_thresholds(ensemble_picks(ensemble, heldout), ensemble.thresholds, 1.0))
        for label, frame in zip(labels, picks):
            table = score_table(solution, frame).set_index("particle_type")
            rows.append(
                {
                    "domain": domain,
                    "model": label,
                    "tuned on": tuned_on,
                    **{name: table.loc[name, "fbeta"] for name in SCORED_PARTICLE_NAMES},
                    "weighted F4": table.attrs["score"],
                }
            )
    return rows


def report(rows: list[dict], domains: list[str], seconds: float) -> str:
    frame = pd.DataFrame(rows).sort_values(["domain", "model"], kind="stable")
    header = "| domain | model | thresholds tuned on | " + " | ".join(SCORED_PARTICLE_NAMES) + " | weighted F4 |"
    lines = [header, "|---|---|---|" + "---:|" * (len(SCORED_PARTICLE_NAMES) + 1)]
    for row in frame.to_dict("records"):
        per_class = " | ".join(f"{row[name]:.3f}" for name in SCORED_PARTICLE_NAMES)
        lines.append(
            f"| {row['domain']} | {row['model']} | {row['tuned on']} | {per_class} | **{row['weighted F4']:.3f}** |"
        )
    return "\n".join(
        [
            *report_header(f"{COMMAND} --domain {' '.join(domains)}", date_note=f"{seconds / 60:.0f} minutes in all"),
            "",
            "The quality benchmark's models (`benchmarks/quality.py`, each domain's own), per-class thresholds (the "
            "ensemble: its calibration, weights and thresholds, `cryokit ensemble`) tuned on the runs a row names, "
            "the 2 held-out runs scored with the competition metric. Each model predicts with the demo's TTA "
            f"(`DEMO_TTA`: the U-Net {DEMO_TTA['unet']}, the detector {DEMO_TTA['yolo3d']}). Per-class F4:",
            "",
            *lines,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return domains_main(argv, __doc__.splitlines()[0], transfer_rows, report, "Threshold transfer")


if __name__ == "__main__":
    sys.exit(main())
