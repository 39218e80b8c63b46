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
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

# Thresholds tuned on some runs and then applied to others are lowered by this factor. F4 counts a missed
# particle 16 times a false one, so a threshold a little too high on new runs costs far more than one a little
# too low, and one run's optimum is often the top of a narrow peak. Over 8 models of the quality benchmarks
# (U-Nets with flips, detectors; both simulated domains; each unseen run tuning in turn), 0.8 raised the
# mean held-out F4 of 7 (0.815 -> 0.824 on average; 0.9: all 8, 0.821) (docs/BENCHMARKS.md, "Threshold scale").
THRESHOLD_SCALE = 0.8

__all__ = [
    "ThresholdCurve",
    "threshold_curves",
    "weighted_score",
    "THRESHOLD_SCALE",
    "check_threshold_scale",
    "thresholds_of_curves",
    "best_thresholds",
    "nms_candidates",
    "save_thresholds",
    "load_thresholds",
]


@dataclass(frozen=True)
class ThresholdCurve:
    """F-beta of one class as a function of its threshold.

    Attributes:
        particle_type: the class.
        thresholds: (T,) distinct candidate scores, decreasing; keeping ``score >= thresholds[i]`` gives row i.
        tp, fp, fn: (T,) counts at each threshold, as the metric counts them.
        precision, recall, fbeta: (T,) the metric's values at each threshold.
        n_references: references of the class (``fn`` when nothing is kept).
        beta: F-beta's beta.
    """

    particle_type: str
    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    fbeta: np.ndarray
    n_references: int = 0
    beta: float = 4

    def best(self) -> tuple[float, float]:
        """(threshold, F-beta) at the optimum (the highest threshold reaching the maximum).

        The threshold sits halfway to the next lower score, so small score shifts on new data do not
        drop the last kept pick; it keeps exactly the optimum's picks. Where no threshold gives a
        true positive the threshold lies above every score (at least 1.0): the class keeps nothing.
        """
        if len(self.thresholds) == 0 or self.fbeta.max() <= 0:
            top = float(self.thresholds[0]) if len(self.thresholds) else 0.0
            return max(1.0, float(np.nextafter(top, np.inf))), 0.0
        i = int(np.argmax(self.fbeta))  # first maximum: the highest threshold reaching it
        chosen = float(self.thresholds[i])
        lower = float(self.thresholds[i + 1]) if i + 1 < len(self.thresholds) else min(0.0, chosen)
        middle = 0.5 * (chosen + lower)
        # Adjacent floats can round the midpoint onto the lower score: then keep the score itself.
        return (middle if lower < middle <= chosen else chosen), float(self.fbeta[i])

    def at(self, threshold: float) -> tuple[int, int, int, float, float, float]:
        """(tp, fp, fn, precision, recall, fbeta) when keeping candidates with ``score >= threshold``."""
        # thresholds decrease: the kept set is that of the last row whose threshold is >= threshold
        row = int(np.searchsorted(-self.thresholds, -threshold, side="right")) - 1
        if row < 0:
            return (0, 0, self.n_references, 0.0, 0.0, 0.0)
        return (
            int(self.tp[row]),
            int(self.fp[row]),
            int(self.fn[row]),
            float(self.precision[row]),
            float(self.recall[row]),
            float(self.fbeta[row]),
        )


def _xyz(frame: pd.DataFrame) -> np.ndarray:
    return frame[["x", "y", "z"]].to_numpy(np.float64)


def _best_nearby_scores(refs: pd.DataFrame, cands: pd.DataFrame, radius_angstrom: float) -> np.ndarray:
    """(R,) highest score of a candidate within ``radius`` (inclusive) of each reference, -inf if none."""
    best = np.full(len(refs), -np.inf)
    ref_xyz = _xyz(refs)
    cand_rows = cands.groupby("experiment", sort=False).indices
    for experiment, ref_rows in refs.groupby("experiment", sort=False).indices.items():
        rows = cand_rows.get(experiment)
        if rows is None:
            continue
        tree = cKDTree(_xyz(cands.iloc[rows]))
        scores = cands["score"].to_numpy(np.float64)[rows]
        near = tree.query_ball_point(ref_xyz[ref_rows], r=radius_angstrom)
        best[ref_rows] = [scores[n].max() if n else -np.inf for n in near]
    return best


def _fbeta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> tuple[np.ndarray, ...]:
    """Precision, recall and F-beta with the metric's expressions, bit for bit (0 where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        fbeta = np.where(
            precision + recall > 0, (1 + beta**2) * (precision * recall) / (beta**2 * precision + recall), 0.0
        )
    return precision, recall, fbeta


def _curve(
    name: str, refs: pd.DataFrame, cands: pd.DataFrame, distance_multiplier: float, beta: float, radius_angstrom: float
) -> ThresholdCurve:
    radius = radius_angstrom * distance_multiplier
    ref_best = np.sort(_best_nearby_scores(refs, cands, radius))
    scores = np.sort(cands["score"].to_numpy(np.float64))  # the one sort of the class
    thresholds = np.unique(scores)[::-1]
    kept = len(scores) - np.searchsorted(scores, thresholds, side="left")
    tp = len(ref_best) - np.searchsorted(ref_best, thresholds, side="left")
    fp, fn = kept - tp, len(ref_best) - tp
    return ThresholdCurve(name, thresholds, tp, fp, fn, *_fbeta(tp, fp, fn, beta), len(ref_best), beta)


def _check_candidates(candidates: pd.DataFrame, catalog: ParticleCatalog) -> None:
    missing = [c for c in ("experiment", "particle_type", "x", "y", "z", "score") if c not in candidates.columns]
    if missing:
        hint = " (keep every pick's score when decoding)" if "score" in missing else ""
        raise ValueError(f"candidates are missing column(s) {', '.join(missing)}{hint}")
    scores = candidates["score"].to_numpy(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"candidates have {int((~np.isfinite(scores)).sum())} non-finite score(s)")
    unknown = sorted(set(candidates["particle_type"]) - set(catalog.names), key=str)
    if unknown:
        raise ValueError(f"candidates have unknown particle type(s) {unknown}")


def threshold_curves(
    candidates: pd.DataFrame,
    solution: pd.DataFrame,
    distance_multiplier: float = 0.5,
    beta: float = 4,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> dict[str, ThresholdCurve]:
    """One curve per particle type present in ``solution``, in catalog order.

    Args:
        candidates: scored picks, columns experiment, particle_type, x, y, z (Angstrom) and score.
        solution: reference picks, columns experiment, particle_type, x, y, z.
        distance_multiplier: match radius as a fraction of the particle radius (Kaggle: 0.5).
        beta: F-beta's beta (Kaggle: 4).
        catalog: the particle types and radii (default the competition's six).

    Candidates of experiments absent from the solution are dropped, as the metric drops them. A class
    without candidates gets an empty curve (``best()`` is then (>= 1.0, 0.0)).
    """
    _check_candidates(candidates, catalog)
    candidates = candidates[candidates["experiment"].isin(set(solution["experiment"]))]
    curves = {}
    for name in catalog.names:
        refs = solution[solution["particle_type"] == name].reset_index(drop=True)
        if refs.empty:
            continue
        cands = candidates[candidates["particle_type"] == name].reset_index(drop=True)
        curves[name] = _curve(name, refs, cands, distance_multiplier, beta, catalog.get(name).radius_angstrom)
    return curves


def weighted_score(
    curves: Mapping[str, ThresholdCurve],
    thresholds: Mapping[str, float],
    default: float = 0.0,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> float:
    """The competition score when each class keeps ``score >= thresholds[class]`` (``default`` if absent)."""
    total = sum(catalog.get(name).weight * curve.at(thresholds.get(name, default))[5] for name, curve in curves.items())
    return total / catalog.total_weight if catalog.total_weight else 0.0


def check_threshold_scale(scale: float, name: str = "threshold scale") -> None:
    """Raise ``ValueError`` naming ``name`` (a setting or option) unless ``scale`` is a number in (0, 1]."""
    if not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise ValueError(f"{name} must be in (0, 1], got {scale!r}")


def thresholds_of_curves(curves: Mapping[str, ThresholdCurve], scale: float = 1.0) -> dict[str, float]:
    """Each curve's F-beta-optimal threshold (``ThresholdCurve.best``) times ``scale``.

    ``scale`` < 1 lowers the thresholds for runs they were not tuned on (``THRESHOLD_SCALE``). A class whose
    optimum keeps nothing (no true positive at any threshold), or whose threshold is not positive, keeps
    its threshold as it is: scaling would keep candidates there, or raise it.
    """
    check_threshold_scale(scale)
    chosen = {}
    for name, curve in curves.items():
        threshold, fbeta = curve.best()
        chosen[name] = threshold * scale if fbeta > 0 and threshold > 0 else threshold
    return chosen


def best_thresholds(
    candidates: pd.DataFrame,
    solution: pd.DataFrame,
    distance_multiplier: float = 0.5,
    beta: float = 4,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
    scale: float = 1.0,
) -> dict[str, float]:
    """The F-beta-optimal threshold of every particle type present in ``solution``, times ``scale``
    (``thresholds_of_curves``; pass ``THRESHOLD_SCALE`` for thresholds that other runs will use)."""
    return thresholds_of_curves(threshold_curves(candidates, solution, distance_multiplier, beta, catalog), scale)


def save_thresholds(
    path: str | Path, thresholds: Mapping[str, float], catalog: ParticleCatalog = COMPETITION_CATALOG
) -> Path:
    """Write ``{"particle": threshold}`` JSON atomically; names are checked against the catalog and
    values must be finite numbers (JSON has no NaN)."""
    for name, value in thresholds.items():
        catalog.check(name, f"thresholds for {path}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
            raise ValueError(f"thresholds for {path}: {name} threshold must be a finite number, got {value!r}")
    return atomic_write_text(path, json.dumps({k: float(v) for k, v in thresholds.items()}, indent=2))


def load_thresholds(path: str | Path, catalog: ParticleCatalog = COMPETITION_CATALOG) -> dict[str, float]:
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
        if name not in catalog.names:
            raise ValueError(
                f"thresholds file {path}: unknown particle type {name!r} (catalog {catalog.source}: "
                f"{', '.join(catalog.names)})"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"thresholds file {path}: {name} threshold must be a finite number, got {value!r}")
    return {k: float(v) for k, v in values.items()}


def nms_candidates(
    candidates: pd.DataFrame, radius_fraction: float, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> pd.DataFrame:
    """Candidates after greedy spherical NMS per (experiment, class) with radius ``radius_fraction`` times
    the class radius (Angstrom), as ``postprocess.radius_fraction`` does at decoding; 0 returns them as
    they are. Kept rows keep their order."""
    if not (np.isfinite(radius_fraction) and radius_fraction >= 0):
        raise ValueError(f"radius_fraction must be a number >= 0, got {radius_fraction!r}")
    if radius_fraction == 0 or candidates.empty:
        return candidates
    from cryokit.postprocess import spherical_nms

    kept = []
    for (_, name), rows in candidates.groupby(["experiment", "particle_type"], sort=False).indices.items():
        frame = candidates.iloc[rows]
        chosen = spherical_nms(
            _xyz(frame), frame["score"].to_numpy(np.float64), radius_fraction * catalog.get(name).radius_angstrom
        )
        kept.append(rows[chosen])
    return candidates.iloc[np.sort(np.concatenate(kept))].reset_index(drop=True)
