"""The classical DoG baseline on simulated data: calibrate on train runs, score held-out runs.

For each simulator domain (``fixed``, ``randomized``: ``SimulationConfig.domain``) and difficulty,
simulates ``--train-runs`` runs (seed 0) for calibration and ``--test-runs``
held-out runs (seed 1) at full size (184 x 630 x 630), calibrates blob sizes and thresholds per type on
the former (``cryokit.baseline.calibrate``) and scores its picks on the latter with the competition
metric. The per-type tables at the default difficulty and every total go to docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/baseline.py`` (updates the "Classical baseline" section).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402

from cryokit.baseline import BaselineConfig, calibrate, predict  # noqa: E402
from cryokit.io import KaggleSource, read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.synth import config_for_difficulty, simulate_dataset  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/baseline.py"


def evaluate(domain: str, difficulty: str, folder: Path, train_runs: int, test_runs: int) -> tuple[pd.DataFrame, float]:
    """(per-type table with the calibration, seconds) for one domain and difficulty."""
    config = config_for_difficulty(difficulty, domain=domain)
    simulate_dataset(folder / "calibration", train_runs, seed=0, config=config, progress=False)
    simulate_dataset(folder / "held_out", test_runs, seed=1, config=config, progress=False)
    start = time.perf_counter()
    calibration = calibrate(KaggleSource(folder / "calibration"), config=BaselineConfig(), progress=False)
    picks = predict(KaggleSource(folder / "held_out"), calibration, config=BaselineConfig(), progress=False)
    seconds = time.perf_counter() - start
    table = score_table(read_solution(folder / "held_out", "train"), picks)
    merged = table.merge(calibration.table(), on="particle_type")
    merged.attrs["score"] = table.attrs["score"]
    return merged, seconds


def _markdown(table: pd.DataFrame) -> str:
    lines = [
        "| particle_type | weight | blob radius (x catalog) | threshold | tp | fp | fn | precision | recall | F4 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.particle_type} | {r.weight} | {r.body_fraction:.1f} | {r.threshold:.3f} | {r.tp} | "
            f"{r.fp} | {r.fn} | {r.precision:.3f} | {r.recall:.3f} | {r.fbeta:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-runs", type=int, default=2)
    parser.add_argument("--test-runs", type=int, default=2)
    parser.add_argument("--difficulties", nargs="+", default=["default", "easy", "hard"])
    parser.add_argument("--domains", nargs="+", default=["randomized", "fixed"], choices=["randomized", "fixed"])
    args = parser.parse_args(argv)
    results = {}
    for domain in args.domains:
        for difficulty in args.difficulties:
            with tempfile.TemporaryDirectory() as folder:
                results[domain, difficulty] = evaluate(
                    domain, difficulty, Path(folder), args.train_runs, args.test_runs
                )
            table, seconds = results[domain, difficulty]
            print(f"\n{domain} {difficulty}: weighted F4 {table.attrs['score']:.4f} ({seconds:.0f} s)", flush=True)
            print(table.round(3).to_string(), flush=True)
    n_runs = args.train_runs + args.test_runs
    totals = "\n".join(
        f"| {domain} | {d} | {t.attrs['score']:.3f} | {s / n_runs:.0f} |" for (domain, d), (t, s) in results.items()
    )
    main_difficulty = "default" if "default" in args.difficulties else args.difficulties[0]
    per_type = "\n\n".join(
        f"Per type, `{domain}` domain at `{main_difficulty}`:\n\n{_markdown(results[domain, main_difficulty][0])}"
        for domain in args.domains
    )
    command = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    body = (
        "\n".join(report_header(command)) + "\n\n"
        f"Difference-of-Gaussians blob detection (`cryokit.baseline`, level 1 = 20 A voxels, denoised), one "
        f"blob radius and threshold per type calibrated (F4-optimal) on {args.train_runs} simulated train runs "
        f"(seed 0), scored on {args.test_runs} held-out runs (seed 1); all runs 184 x 630 x 630. The calibration "
        f"band for the simulator's `default` difficulty is 0.2 to 0.5, in both domains (`randomized`: every run "
        f"draws its imaging, ice, clutter and particle variants from `DomainRanges()`).\n\n"
        f"| domain | difficulty | weighted F4 (held out) | baseline seconds per run (calibration and prediction) |\n"
        f"|---|---|---:|---:|\n{totals}\n\n{per_type}\n"
    )
    update_section("Classical baseline", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
