"""Benchmark the exact per-class threshold search against re-scoring the filtered picks per threshold.

Synthetic input of validation size: 7 runs x ~300 references (all six types) and 20 scored candidates
per reference (hits near references with higher scores, and strays), about 42,000 candidates.

* ``cryokit.thresholds.best_thresholds``: one KD-tree query and one sort per class, every distinct
  score evaluated at once.
* Brute force, exact: for every class and every distinct candidate score, keep ``score >= t`` and call
  ``cryokit.metric.score_table`` (itself ~70x faster than a plain KD-tree loop). There are tens of
  thousands of distinct scores, so its time is measured on an evenly spaced sample of them per class
  and scaled to all of them; the sampled rows are checked to be identical to the curves'.
* Brute force on a grid of 100 thresholds (what a notebook typically does; not exact), measured whole.

Run: ``.venv/bin/python benchmarks/thresholds.py`` (updates the "Threshold search" section of
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import best_time, report_header, update_section  # noqa: E402

from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import PARTICLES  # noqa: E402
from cryokit.thresholds import best_thresholds, threshold_curves  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/thresholds.py"
N_RUNS = 7
REFERENCES_PER_TYPE = (60, 20, 40, 60, 50, 70)  # mean per run, catalog order (~300)
CANDIDATES_PER_REFERENCE = 20
SAMPLED_THRESHOLDS = 40  # per class, for the exact brute force
GRID = np.linspace(0.0, 1.0, 100)
EXTENT_ANGSTROM_XYZ = np.array([6300.0, 6300.0, 1840.0])
COLUMNS = ["experiment", "particle_type", "x", "y", "z"]


def synthetic_case(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(solution, scored candidates): per reference ~3 hits near it (scores ~Beta(5, 2)) and ~17 strays
    of its type anywhere in the run (scores ~Beta(1.5, 5))."""
    rng = np.random.default_rng(seed)
    sol, cand = [], []
    for r in range(N_RUNS):
        for p, mean in zip(PARTICLES, REFERENCES_PER_TYPE):
            refs = rng.uniform(0, EXTENT_ANGSTROM_XYZ, size=(rng.poisson(mean), 3))
            sol.append(_rows(f"TS_{r}", p.name, refs, None))
            hits = np.repeat(refs, rng.poisson(3, size=len(refs)), axis=0)
            hits = hits + rng.normal(scale=0.5 * p.match_radius_angstrom, size=hits.shape)
            cand.append(_rows(f"TS_{r}", p.name, hits, rng.beta(5, 2, size=len(hits))))
            n_strays = CANDIDATES_PER_REFERENCE * len(refs) - len(hits)
            strays = rng.uniform(0, EXTENT_ANGSTROM_XYZ, size=(max(n_strays, 0), 3))
            cand.append(_rows(f"TS_{r}", p.name, strays, rng.beta(1.5, 5, size=len(strays))))
    return pd.concat(sol, ignore_index=True), pd.concat(cand, ignore_index=True)


def _rows(experiment: str, name: str, xyz: np.ndarray, scores: np.ndarray | None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"experiment": experiment, "particle_type": name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    )
    return frame if scores is None else frame.assign(score=scores)


def brute_rows(
    solution: pd.DataFrame, candidates: pd.DataFrame, name: str, thresholds: np.ndarray
) -> list[tuple[int, int, int, float]]:
    """(tp, fp, fn, fbeta) of ``name`` at each threshold, by filtering and re-scoring."""
    mine = candidates[candidates["particle_type"] == name]
    rows = []
    for t in thresholds:
        row = score_table(solution, mine.loc[mine["score"] >= t, COLUMNS]).set_index("particle_type").loc[name]
        rows.append((int(row.tp), int(row.fp), int(row.fn), float(row.fbeta)))
    return rows


def grid_search(solution: pd.DataFrame, candidates: pd.DataFrame) -> dict[str, float]:
    """Best grid threshold per class: one ``score_table`` call per grid value scores every class."""
    best: dict[str, tuple[float, float]] = {}
    for t in GRID:
        table = score_table(solution, candidates.loc[candidates["score"] >= t, COLUMNS])
        for row in table.itertuples():
            if row.fbeta > best.get(row.particle_type, (-1.0, 0.0))[0]:
                best[row.particle_type] = (row.fbeta, float(t))
    return {name: t for name, (_, t) in best.items()}


def exact_brute_seconds(solution: pd.DataFrame, candidates: pd.DataFrame) -> tuple[float, int]:
    """(projected seconds of the exact brute force over every distinct score, distinct scores), checking
    the sampled rows against ``threshold_curves``."""
    curves = threshold_curves(candidates, solution)
    projected, distinct = 0.0, 0
    for name, curve in curves.items():
        picks = np.unique(np.linspace(0, len(curve.thresholds) - 1, SAMPLED_THRESHOLDS).astype(int))
        start = time.perf_counter()
        rows = brute_rows(solution, candidates, name, curve.thresholds[picks])
        seconds = time.perf_counter() - start
        expected = [(int(curve.tp[i]), int(curve.fp[i]), int(curve.fn[i]), float(curve.fbeta[i])) for i in picks]
        assert rows == expected, f"{name}: brute force and curves differ"
        projected += seconds / len(picks) * len(curve.thresholds)
        distinct += len(curve.thresholds)
    return projected, distinct


def main() -> None:
    solution, candidates = synthetic_case()
    fast_s, _ = best_time(best_thresholds, candidates, solution, repeats=5)
    grid_s, _ = best_time(grid_search, solution, candidates, repeats=1)
    brute_s, distinct = exact_brute_seconds(solution, candidates)
    fast_s = min(fast_s, best_time(best_thresholds, candidates, solution, repeats=5)[0])
    print(f"{len(solution)} references, {len(candidates)} candidates, {distinct} distinct (class, score) pairs")
    print(
        f"best_thresholds: {fast_s:.3f} s; exact brute force (projected): {brute_s:.0f} s "
        f"({brute_s / fast_s:,.0f}x); 100-value grid: {grid_s:.2f} s ({grid_s / fast_s:.0f}x)"
    )
    body = "\n".join(
        [
            *report_header(
                COMMAND,
                date_note=f"load average at the end {os.getloadavg()[0]:.1f} (2 shared cores: expect tens of "
                "percent of noise)",
            ),
            "",
            f"Input: {N_RUNS} runs, {len(solution):,} references (six types), {len(candidates):,} scored candidates "
            f"({CANDIDATES_PER_REFERENCE} per reference: hits near references and strays), {distinct:,} distinct "
            "(class, score) thresholds. The exact brute force filters the candidates at every distinct score of a "
            f"class and re-scores with `cryokit.metric.score_table`; it is timed on {SAMPLED_THRESHOLDS} evenly spaced "
            "scores per class (whose tp/fp/fn/F4 are checked identical to the curves') and scaled to all of them.",
            "",
            "| method | exact | seconds | ratio to `best_thresholds` |",
            "|---|---|---:|---:|",
            f"| `cryokit.thresholds.best_thresholds` (best of 10) | yes | {fast_s:.3f} | 1x |",
            f"| brute force over every distinct score (projected) | yes | {brute_s:,.0f} | {brute_s / fast_s:,.0f}x |",
            f"| brute force over a 100-value grid (one `score_table` per value) | no | {grid_s:.2f} | "
            f"{grid_s / fast_s:.0f}x |",
        ]
    )
    print(f"updated {update_section('Threshold search', body)}")


if __name__ == "__main__":
    main()
