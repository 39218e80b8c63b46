"""Benchmark cryokit.metric.score against a plain per-experiment KD-tree loop on a test-sized input.

Synthetic input: 500 experiments x ~300 references (all six types, Angstrom coordinates inside a
6300 x 6300 x 1840 box) and ~3 candidates per reference (jittered references, duplicates, random
false positives). Both implementations score the same frames; the scores must be identical.

Run: ``.venv/bin/python benchmarks/metric.py`` (updates the "Metric" section of docs/BENCHMARKS.md).
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import KDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import best_time, machine_description, update_section  # noqa: E402

from cryokit.metric import score  # noqa: E402
from cryokit.particles import PARTICLE_NAMES, PARTICLES, TOTAL_WEIGHT  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/metric.py"
N_EXPERIMENTS = 500
REFERENCES_PER_TYPE = (60, 20, 40, 60, 50, 70)  # mean per experiment, catalog order (~300)
EXTENT_ANGSTROM_XYZ = np.array([6300.0, 6300.0, 1840.0])
REPEATS = 5  # cryokit timings: best of this many, taken before and again after the plain runs
PLAIN_REPEATS = 2


def synthetic_case(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(solution, submission) with ~150k references and ~450k candidates.

    Like a real submission, candidate rows are grouped by experiment (one tomogram at a time), with
    types and true / false positives mixed within an experiment.
    """
    rng = np.random.default_rng(seed)
    sol, sub = [], []
    for e in range(N_EXPERIMENTS):
        experiment = f"TS_{e}"
        refs_e, cands_e = [], []
        for p, mean in zip(PARTICLES, REFERENCES_PER_TYPE):
            refs = rng.uniform(0, EXTENT_ANGSTROM_XYZ, size=(rng.poisson(mean), 3))
            refs_e.append(_rows(experiment, p.name, refs))
            picked = refs[rng.random(len(refs)) < 0.85]
            twice = picked[rng.random(len(picked)) < 0.3]  # second, nearby candidate
            jitter = np.vstack([picked, twice])
            jitter += rng.normal(scale=0.4 * p.match_radius_angstrom, size=jitter.shape)
            cands_e.append(_rows(experiment, p.name, jitter))
        n_false = 3 * sum(map(len, refs_e)) - sum(map(len, cands_e))
        strays = rng.uniform(0, EXTENT_ANGSTROM_XYZ, size=(max(n_false, 0), 3))
        cands_e.append(_rows(experiment, list(rng.choice(PARTICLE_NAMES, size=len(strays))), strays))
        cands = pd.concat(cands_e, ignore_index=True)
        sol += refs_e
        sub.append(cands.iloc[rng.permutation(len(cands))])
    solution = pd.concat(sol, ignore_index=True)
    submission = pd.concat(sub, ignore_index=True)
    submission.insert(0, "id", np.arange(len(submission)))
    return solution, submission


def _rows(experiment: str, name: str | list[str], xyz: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"experiment": experiment, "particle_type": name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    )


def plain_score(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The host's algorithm, filtering per experiment first: two KD-trees per (experiment, type)."""
    radius = {p.name: p.radius_angstrom * 0.5 for p in PARTICLES}
    weight = {p.name: p.weight for p in PARTICLES}
    submission = submission[submission["experiment"].isin(set(solution["experiment"]))]
    types = solution["particle_type"].unique()
    totals = {t: [0, 0, 0] for t in types}
    for experiment in solution["experiment"].unique():
        sol_e = solution[solution["experiment"] == experiment]
        sub_e = submission[submission["experiment"] == experiment]
        for t in types:
            refs = sol_e.loc[sol_e["particle_type"] == t, ["x", "y", "z"]].to_numpy()
            cands = sub_e.loc[sub_e["particle_type"] == t, ["x", "y", "z"]].to_numpy()
            tp = 0
            if len(refs) and len(cands):
                hits = KDTree(cands).query_ball_tree(KDTree(refs), r=radius[t])
                tp = len({j for h in hits for j in h})
            totals[t] = [totals[t][0] + tp, totals[t][1] + len(cands) - tp, totals[t][2] + len(refs) - tp]
    total = 0.0
    for t, (tp, fp, fn) in totals.items():
        precision = tp / (tp + fp) if tp + fp > 0 else 0
        recall = tp / (tp + fn) if tp + fn > 0 else 0
        f = 17 * precision * recall / (16 * precision + recall) if precision + recall > 0 else 0.0
        total += f * weight[t]
    return total / TOTAL_WEIGHT


def main() -> None:
    solution, submission = synthetic_case()
    # Interleaved best-of timings, so a burst of load on a shared machine hits both sides alike.
    fast_before, fast = best_time(score, solution, submission, repeats=REPEATS)
    plain_s, plain = best_time(plain_score, solution, submission, repeats=PLAIN_REPEATS)
    fast_s = min(fast_before, best_time(score, solution, submission, repeats=REPEATS)[0])
    assert fast == plain, f"scores differ: cryokit {fast!r} vs plain {plain!r}"
    ratio = plain_s / fast_s
    print(f"{len(solution)} references, {len(submission)} candidates, score {fast:.6f}")
    print(f"cryokit.metric.score: {fast_s:.3f} s (best of {2 * REPEATS})")
    print(f"plain per-experiment KD-tree loop: {plain_s:.3f} s (best of {PLAIN_REPEATS})")
    print(f"speed-up: {ratio:.0f}x")
    body = "\n".join(
        [
            f"Command: `{COMMAND}`  ",
            f"Machine: {machine_description()}  ",
            f"Date: {datetime.date.today().isoformat()}; load average at the end of the run "
            f"{os.getloadavg()[0]:.1f} (cores shared with other jobs: expect tens of percent of noise)",
            "",
            f"Input: {N_EXPERIMENTS} experiments, {len(solution):,} references (all six types), "
            f"{len(submission):,} candidates (jittered references, duplicates, random false positives; "
            "rows grouped by experiment as a pipeline writes them, types mixed within an experiment). "
            f"Both give the same score ({fast!r}).",
            "",
            "| implementation | seconds |",
            "|---|---:|",
            f"| `cryokit.metric.score` (best of {2 * REPEATS}) | {fast_s:.3f} |",
            f"| plain loop: per-experiment pandas filter, two KD-trees per type (best of {PLAIN_REPEATS}) "
            f"| {plain_s:.2f} |",
            f"| speed-up | {ratio:.0f}x |",
        ]
    )
    print(f"updated {update_section('Metric', body)}")


if __name__ == "__main__":
    main()
