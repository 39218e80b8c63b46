"""Per-class decision thresholds that maximise the competition's F-beta, computed exactly.

Every candidate pick keeps its score. For one class, keeping the candidates with ``score >= t``
gives ``tp(t)`` = references whose best-scoring candidate within the match radius has a score >= t
(the metric matches a reference if *any* candidate is close), and ``fp(t) = kept(t) - tp(t)``. So
one KD-tree query gives each reference its best nearby score, one sort of the candidate scores
gives ``kept(t)`` and ``tp(t)`` for every candidate threshold at once, and the metric's F-beta is
evaluated on all of them in one vectorised step: no re-scoring per threshold. Counts are pooled
over experiments, as the metric does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryokit.io.atomic import atomic_write_text
from cryokit.particles import PARTICLE_NAMES, particle

__all__ = ["ThresholdCurve", "threshold_curves", "best_thresholds", "save_thresholds", "load_thresholds"]


@dataclass(frozen=True)
class ThresholdCurve:
    """F-beta of one class as a function of its threshold.

    Attributes:
        thresholds: (T,) decreasing candidate scores; keeping ``score >= thresholds[i]`` gives row i.
        tp, fp, fn: (T,) counts at each threshold. precision, recall, fbeta: (T,) values.
    """

    particle_type: str
    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    fbeta: np.ndarray

    def best(self) -> tuple[float, float]:
        """(threshold, F-beta) at the optimum; the threshold sits halfway to the next lower score, so
        small score shifts on new data do not drop the last kept pick. Without candidates: (1.0, 0.0)."""
        if len(self.thresholds) == 0 or self.fbeta.max() <= 0:
            return 1.0, 0.0
        i = int(np.argmax(self.fbeta))  # first maximum: the highest threshold reaching it
        lower = self.thresholds[i + 1] if i + 1 < len(self.thresholds) else 0.0
        return float(0.5 * (self.thresholds[i] + lower)), float(self.fbeta[i])


def _best_nearby_scores(refs: pd.DataFrame, cands: pd.DataFrame, radius_angstrom: float) -> np.ndarray:
    """(R,) highest score of a candidate within ``radius`` (inclusive) of each reference, -inf if none."""
    best = np.full(len(refs), -np.inf)
    for experiment, ref_rows in refs.groupby("experiment", sort=False).indices.items():
        mine = cands[cands["experiment"] == experiment]
        if mine.empty:
            continue
        tree = cKDTree(mine[["x", "y", "z"]].to_numpy(np.float64))
        scores = mine["score"].to_numpy(np.float64)
        near = tree.query_ball_point(refs[["x", "y", "z"]].to_numpy(np.float64)[ref_rows], r=radius_angstrom)
        best[ref_rows] = [scores[n].max() if n else -np.inf for n in near]
    return best


def _curve(name: str, refs: pd.DataFrame, cands: pd.DataFrame, distance_multiplier: float,
           beta: float) -> ThresholdCurve:
    radius = particle(name).radius_angstrom * distance_multiplier
    ref_best = np.sort(_best_nearby_scores(refs, cands, radius))
    thresholds = np.unique(cands["score"].to_numpy(np.float64))[::-1]
    kept = len(cands) - np.searchsorted(np.sort(cands["score"].to_numpy(np.float64)), thresholds, side="left")
    tp = len(ref_best) - np.searchsorted(ref_best, thresholds, side="left")
    fp, fn = kept - tp, len(ref_best) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        fbeta = np.where(precision + recall > 0,
                         (1 + beta**2) * precision * recall / (beta**2 * precision + recall), 0.0)
    return ThresholdCurve(name, thresholds, tp, fp, fn, precision, recall, fbeta)


def threshold_curves(candidates: pd.DataFrame, solution: pd.DataFrame, distance_multiplier: float = 0.5,
                     beta: float = 4) -> dict[str, ThresholdCurve]:
    """One curve per particle type present in ``solution`` (candidates need a ``score`` column).

    Candidates of experiments absent from the solution are dropped, as the metric drops them.
    """
    if "score" not in candidates.columns:
        raise ValueError("candidates need a 'score' column (keep every pick's score when decoding)")
    candidates = candidates[candidates["experiment"].isin(set(solution["experiment"]))]
    curves = {}
    for name in PARTICLE_NAMES:
        refs = solution[solution["particle_type"] == name].reset_index(drop=True)
        if refs.empty:
            continue
        cands = candidates[candidates["particle_type"] == name].reset_index(drop=True)
        curves[name] = _curve(name, refs, cands, distance_multiplier, beta)
    return curves


def best_thresholds(candidates: pd.DataFrame, solution: pd.DataFrame, distance_multiplier: float = 0.5,
                    beta: float = 4) -> dict[str, float]:
    """The F-beta-optimal threshold of every particle type present in ``solution``."""
    return {name: curve.best()[0] for name, curve in
            threshold_curves(candidates, solution, distance_multiplier, beta).items()}


def save_thresholds(path: str | Path, thresholds: Mapping[str, float]) -> Path:
    """Write ``{"particle": threshold}`` JSON atomically; names are checked against the catalog."""
    for name in thresholds:
        particle(name)
    return atomic_write_text(path, json.dumps({k: float(v) for k, v in thresholds.items()}, indent=2))


def load_thresholds(path: str | Path) -> dict[str, float]:
    """Read a thresholds JSON written by ``save_thresholds`` (or by hand), validating names and values."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"thresholds file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"thresholds file {path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"thresholds file {path} must hold an object {{particle: threshold}}")
    for name, value in values.items():
        if name not in PARTICLE_NAMES:
            raise ValueError(f"thresholds file {path}: unknown particle type {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"thresholds file {path}: {name} threshold must be a finite number, got {value!r}")
    return {k: float(v) for k, v in values.items()}
