"""Ensembles of models of different kinds: calibrate each member's scores, weigh members per class, merge.

Members of one kind (same task, stride, level) are averaged map by map in ``cryokit.inference``. Members of
different kinds (a U-Net's softmax probabilities, the detector's objectness x class) score on different
scales, so their picks are merged only after each member's scores are mapped, per class, onto one
scale: the probability that a pick is a true positive, fitted on validation runs by isotonic regression
(scipy's ``isotonic_regression``). The mapping is made strictly increasing, so it never reorders a
member's picks: calibrating one model changes none of its thresholded picks, only the numbers.

Per class, members are weighted by their validation F4 (a member that finds nothing of a class adds
nothing to it). The *lead* member is the one of the best weighted validation F4. Each class starts from the
members merged with equal weights on *threshold-scaled* scores (each member's scores divided by its own
tuned validation threshold: one number per class, not a fitted curve) where that scores at least as well on
validation as the lead alone, else from the lead alone; it keeps its start unless the calibrated merge, or
another member alone, beats it on validation by more than finding
``min_gain_references`` more of that class's validation references would (2 by default: 2 / 18 = 0.11 F4
for the 18 beta-galactosidases of a simulated run, 2 / 54 = 0.04 for its ribosomes). One validation run
holds tens of particles per class, so its per-class F4 moves by a particle or two from run to run (the
binomial spread of 18 references found at a rate of 0.9 is 1.3 of them); a weak member that wins a class
there by less than that loses it on other runs. On simulated runs, a U-Net merged into a stronger
detector where it had won by 0.05 F4 on the fitting run cost the held-out score (docs/BENCHMARKS.md,
"Ensemble across fitting runs"). So on the validation runs adding a member never lowers the lead's score
on any class, and held out a weak member costs little. The threshold-scaled start is there because the
isotonic curves, fitted to one run's tens of references, proved coarse: with a U-Net and the detector of
close quality, merges on them scored below the detector held out, the threshold-scaled start above it on
every fold. Thresholds are then tuned on the merged validation
scores. ``Ensemble`` is plain data (JSON), never code; it records the particle
catalog it was fitted on (the competition's six, or a copick project's objects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression
from scipy.spatial import cKDTree

from cryokit.io.atomic import atomic_write_text
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.postprocess import PICK_SCORE_COLUMNS, empty_scored_picks, merge_picks
from cryokit.thresholds import THRESHOLD_SCALE, best_thresholds, threshold_curves

__all__ = [
    "DEFAULT_MIN_GAIN_REFERENCES",
    "ScoreCalibration",
    "Ensemble",
    "candidate_hits",
    "fit_calibration",
    "fit_ensemble",
    "ensemble_picks",
    "save_ensemble",
    "load_ensemble",
]

# Added per unit of raw score so the calibrated score is strictly increasing (isotonic fits are flat
# in places); far below any difference that matters for a threshold.
_TIE_BREAK = 1e-6
# How many validation references' worth of F4 a class must gain to leave the lead member (module docstring).
DEFAULT_MIN_GAIN_REFERENCES = 2.0


@dataclass(frozen=True)
class ScoreCalibration:
    """Per class, raw score -> probability of a true positive, as knots of a non-decreasing curve.

    ``knots[class] = (raw scores, probabilities)``, both increasing; between knots the curve is linear,
    beyond them flat. Classes without knots keep their raw score.
    """

    knots: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)

    def __call__(self, picks: pd.DataFrame) -> pd.DataFrame:
        """``picks`` with each class's scores calibrated (strictly increasing in the raw score)."""
        out = picks.copy()
        raw = picks["score"].to_numpy(np.float64)
        calibrated = raw.copy()
        for name, (xs, ys) in self.knots.items():
            rows = (picks["particle_type"] == name).to_numpy()
            calibrated[rows] = np.interp(raw[rows], xs, ys) + _TIE_BREAK * raw[rows]
        out["score"] = calibrated
        return out


def candidate_hits(
    candidates: pd.DataFrame,
    solution: pd.DataFrame,
    distance_multiplier: float = 0.5,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> np.ndarray:
    """(N,) 1 for each candidate that is the best-scoring one within the match radius of some reference of its
    class (exactly the candidates that add a true positive as the threshold falls), else 0."""
    hits = np.zeros(len(candidates), dtype=np.float64)
    scores = candidates["score"].to_numpy(np.float64)
    positions = np.arange(len(candidates))
    for (run, name), refs in solution.groupby(["experiment", "particle_type"], sort=False):
        mask = ((candidates["experiment"] == run) & (candidates["particle_type"] == name)).to_numpy()
        if not mask.any():
            continue
        rows = positions[mask]
        tree = cKDTree(candidates.loc[mask, ["x", "y", "z"]].to_numpy(np.float64))
        near = tree.query_ball_point(
            refs[["x", "y", "z"]].to_numpy(np.float64), catalog.get(name).radius_angstrom * distance_multiplier
        )
        for found in near:
            if found:
                hits[rows[max(found, key=lambda i: scores[rows[i]])]] = 1.0
    return hits


def fit_calibration(
    candidates: pd.DataFrame,
    solution: pd.DataFrame,
    distance_multiplier: float = 0.5,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> ScoreCalibration:
    """Isotonic calibration per class of ``solution`` from scored validation ``candidates``."""
    hits = candidate_hits(candidates, solution, distance_multiplier, catalog)
    knots = {}
    for name in catalog.names:
        rows = (candidates["particle_type"] == name).to_numpy()
        if name not in set(solution["particle_type"]) or not rows.any():
            continue
        order = np.argsort(candidates["score"].to_numpy(np.float64)[rows], kind="stable")
        xs = candidates["score"].to_numpy(np.float64)[rows][order]
        ys = isotonic_regression(hits[rows][order], increasing=True).x
        # Keep the ends of every flat block: the same curve from far fewer knots.
        keep = np.ones(len(xs), dtype=bool)
        keep[1:-1] = (np.diff(ys)[:-1] != 0) | (np.diff(ys)[1:] != 0)
        xs, ys = xs[keep], ys[keep]
        xs, first = np.unique(xs, return_index=True)  # equal scores: one knot (isotonic gave them one value)
        knots[name] = (tuple(map(float, xs)), tuple(map(float, ys[first])))
    return ScoreCalibration(knots)


@dataclass(frozen=True)
class Ensemble:
    """How to merge members' picks: each member's calibration, per-class member weights, thresholds.

    Attributes:
        members: a name per member (checkpoint files, for the record and for checks).
        calibrations: one ``ScoreCalibration`` per member.
        weights: per class, one weight per member (sum 1; a single 1 means that member alone).
        thresholds: per class, on the merged (calibrated) scores.
        merge_radius_fraction: clustering radius as a share of the class radius.
        val_fbeta: per class, validation F4 of each member and of the ensemble (the record of the choice).
        catalog: the particles it was fitted on (names, radii, weights).
        tta: per member, the test-time augmentation its candidates were predicted with (the calibration
            holds for that one; empty: "none" for each, as in files before version 3).
    """

    members: tuple[str, ...]
    calibrations: tuple[ScoreCalibration, ...]
    weights: Mapping[str, tuple[float, ...]]
    thresholds: Mapping[str, float]
    merge_radius_fraction: float = 0.5
    val_fbeta: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    catalog: ParticleCatalog = COMPETITION_CATALOG
    tta: tuple[str, ...] = ()

    def __post_init__(self):
        from cryokit.inference.tta import group_ttas  # here: reading and merging picks needs no torch

        object.__setattr__(self, "tta", group_ttas(self.tta or "none", len(self.members)))


def _merge(
    calibrated: Sequence[pd.DataFrame],
    weights: Mapping[str, Sequence[float]],
    radius_fraction: float,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
):
    """Per class: the one member with weight, as it is; else the weighted cluster merge."""
    frames = []
    for name, member_weights in weights.items():
        used = [i for i, w in enumerate(member_weights) if w > 0]
        per_member = [picks[picks["particle_type"] == name] for picks in calibrated]
        if len(used) == 1:
            frames.append(per_member[used[0]])
        else:
            merged = merge_picks(
                [per_member[i] for i in used], radius_fraction, [member_weights[i] for i in used], catalog
            )
            frames.append(merged)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[PICK_SCORE_COLUMNS] if frames else empty_scored_picks()


def _threshold_scaling(
    candidates: pd.DataFrame, solution: pd.DataFrame, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> ScoreCalibration:
    """Per class, scores divided by the member's best validation threshold (knots (0, 1) -> (0, 1 / t)):
    scores are probabilities in [0, 1], so the line covers them all and keeps their order."""
    thresholds = best_thresholds(candidates, solution, catalog=catalog)
    return ScoreCalibration(
        {name: ((0.0, 1.0), (0.0, 1.0 / max(float(t), 1e-6))) for name, t in thresholds.items() if t is not None}
    )


def fit_ensemble(
    member_candidates: Sequence[pd.DataFrame],
    solution: pd.DataFrame,
    members: Sequence[str] | None = None,
    merge_radius_fraction: float = 0.5,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
    min_gain_references: float = DEFAULT_MIN_GAIN_REFERENCES,
    scaled_merge: bool = True,
    threshold_scale: float = THRESHOLD_SCALE,
) -> Ensemble:
    """Calibrate each member on the validation ``solution``, weigh members per class by validation F4,
    start each class from the lead member alone or, where it scores at least as well on validation, the
    members merged with equal weights on scores divided by each member's tuned threshold; replace that by
    another choice only if it beats it by more than ``min_gain_references`` validation references of the
    class are worth; tune the thresholds of the merged scores.

    Args:
        member_candidates: every scored candidate of each member on the validation runs (no thresholds);
            ``attrs["tta"]`` (``group_candidates`` sets it) is recorded as the member's TTA.
        solution: the validation runs' reference picks.
        members: names for the record (default ``member 0``, ``member 1``, ...).
        catalog: the particles of the candidates and the solution (radii for matching, weights).
        min_gain_references: the merge (or another member alone) replaces the lead member on a class only
            if its validation F4 is higher by more than ``min_gain_references / n``, ``n`` the class's
            validation references (0: whatever scores higher on validation).
        scaled_merge: consider the equal-weight merge of threshold-scaled scores (each member's scores of a
            class divided by its tuned validation threshold) as the starting choice. On simulated runs,
            started from it where it tied or beat the lead on the fitting run, the ensemble of the U-Net and
            the detector was at or above the detector on each of 3 folds with two different U-Nets (mean
            0.772 and 0.769 against 0.757), where the isotonic-calibrated merges scored 0.752-0.754:
            curves fitted to one run's tens of references are coarse (docs/BENCHMARKS.md, "Ensemble across
            fitting runs"). The classes it takes keep the linear scaling as their calibration.
        threshold_scale: the merged scores' tuned thresholds are multiplied by this for the runs the ensemble
            will predict (``cryokit.thresholds.THRESHOLD_SCALE``; 1 keeps the validation optimum).
    """
    if not min_gain_references >= 0:
        raise ValueError(f"min_gain_references must be >= 0, got {min_gain_references}")
    if not member_candidates:
        raise ValueError("an ensemble needs at least one member")
    names = tuple(members) if members is not None else tuple(f"member {i}" for i in range(len(member_candidates)))
    if len(names) != len(member_candidates):
        raise ValueError(f"{len(names)} member names for {len(member_candidates)} members")
    calibrations = tuple(fit_calibration(c, solution, catalog=catalog) for c in member_candidates)
    calibrated = [cal(c) for cal, c in zip(calibrations, member_candidates)]

    def curves_of(picks):
        return threshold_curves(picks, solution, catalog=catalog)

    member_f4 = [{n: curve.best()[1] for n, curve in curves_of(c).items()} for c in calibrated]
    classes = [n for n in catalog.names if n in set(solution["particle_type"])]
    weights = {}
    for name in classes:
        f4 = np.array([m.get(name, 0.0) for m in member_f4])
        weights[name] = tuple(map(float, f4 / f4.sum())) if f4.sum() > 0 else tuple([1.0 / len(f4)] * len(f4))
    merged_f4 = {
        n: c.best()[1] for n, c in curves_of(_merge(calibrated, weights, merge_radius_fraction, catalog)).items()
    }
    total = [sum(catalog.get(n).weight * m.get(n, 0.0) for n in classes) for m in member_f4]
    lead = int(np.argmax(total))  # the first of equals: a model with itself is that model

    def alone(index):
        return tuple(1.0 if i == index else 0.0 for i in range(len(member_f4)))

    equal = tuple([1.0 / len(member_f4)] * len(member_f4))
    scaled_f4 = {}
    if scaled_merge and len(member_f4) > 1:
        # Each member's scores of a class divided by its own tuned validation threshold: one scale for all
        # members (1 = "this member would keep it") from one number per class, not a fitted curve.
        scalings = [_threshold_scaling(c, solution, catalog) for c in member_candidates]
        scaled = [scaling(c) for scaling, c in zip(scalings, member_candidates)]
        scaled_f4 = {
            n: c.best()[1]
            for n, c in curves_of(_merge(scaled, {n: equal for n in classes}, merge_radius_fraction, catalog)).items()
        }
    scaled_classes = set()
    references = solution["particle_type"].value_counts()
    for name in classes:
        min_gain = min_gain_references / references[name]  # F4 of that many more references found
        f4 = [m.get(name, 0.0) for m in member_f4]
        starts_scaled = name in scaled_f4 and scaled_f4[name] >= f4[lead]  # ties too: agreement adds recall
        start_f4, start = (scaled_f4[name], equal) if starts_scaled else (f4[lead], alone(lead))
        choices = [(f4[i], alone(i)) for i in range(len(f4)) if i != lead]
        choices.append((merged_f4.get(name, 0.0), weights[name]))
        best_f4, best_weights = max(choices, key=lambda choice: choice[0])  # the first of equals
        if best_f4 > start_f4 + min_gain:
            weights[name] = best_weights
        else:
            weights[name] = start
            if starts_scaled:
                scaled_classes.add(name)
    if scaled_classes:  # those classes merge on the threshold scaling, not on the isotonic curves
        calibrations = tuple(
            ScoreCalibration(
                {
                    **{n: k for n, k in cal.knots.items() if n not in scaled_classes},
                    **{n: k for n, k in scaling.knots.items() if n in scaled_classes},
                }
            )
            for cal, scaling in zip(calibrations, scalings)
        )
        calibrated = [cal(c) for cal, c in zip(calibrations, member_candidates)]
    merged = _merge(calibrated, weights, merge_radius_fraction, catalog)
    curves = curves_of(merged)
    val_fbeta = {
        name: {**{member: m.get(name, 0.0) for member, m in zip(names, member_f4)}, "ensemble": curves[name].best()[1]}
        for name in classes
    }
    thresholds = best_thresholds(merged, solution, catalog=catalog, scale=threshold_scale)
    tta = tuple(c.attrs.get("tta", "none") for c in member_candidates)
    return Ensemble(names, calibrations, weights, thresholds, merge_radius_fraction, val_fbeta, catalog, tta)


def ensemble_picks(ensemble: Ensemble, member_picks: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Merged scored picks (calibrated scale) of one or more runs from each member's scored picks."""
    if len(member_picks) != len(ensemble.members):
        raise ValueError(
            f"the ensemble has {len(ensemble.members)} members ({', '.join(ensemble.members)}), "
            f"got {len(member_picks)} pick tables"
        )
    calibrated = [cal(p) for cal, p in zip(ensemble.calibrations, member_picks)]
    return _merge(calibrated, ensemble.weights, ensemble.merge_radius_fraction, ensemble.catalog)


def save_ensemble(path: str | Path, ensemble: Ensemble) -> Path:
    """Write ``ensemble`` as JSON (atomically)."""
    data = {
        "format": "cryokit-ensemble",
        "version": 3,
        "members": list(ensemble.members),
        "calibrations": [{n: [list(x), list(y)] for n, (x, y) in c.knots.items()} for c in ensemble.calibrations],
        "weights": {n: list(w) for n, w in ensemble.weights.items()},
        "thresholds": dict(ensemble.thresholds),
        "merge_radius_fraction": ensemble.merge_radius_fraction,
        "val_fbeta": {n: dict(v) for n, v in ensemble.val_fbeta.items()},
        "catalog": ensemble.catalog.to_records(),
        "tta": list(ensemble.tta),
    }
    return atomic_write_text(path, json.dumps(data, indent=1))


def load_ensemble(path: str | Path) -> Ensemble:
    """Read an ensemble JSON written by ``save_ensemble``; raises naming the file if it is not one.

    Files of version 1 hold no catalog: they were fitted on the competition's six particles; files before
    version 3 hold no TTA: their members were predicted without."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"ensemble file {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"ensemble file {path} cannot be read as JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != "cryokit-ensemble":
        raise ValueError(f"{path} is not a cryokit ensemble file (no 'format: cryokit-ensemble')")
    try:
        members = tuple(data["members"])
        calibrations = tuple(
            ScoreCalibration({n: (tuple(map(float, x)), tuple(map(float, y))) for n, (x, y) in c.items()})
            for c in data["calibrations"]
        )
        weights = {n: tuple(map(float, w)) for n, w in data["weights"].items()}
        thresholds = {n: float(t) for n, t in data["thresholds"].items()}
        radius = float(data["merge_radius_fraction"])
        catalog = ParticleCatalog.from_records(data["catalog"], str(path)) if "catalog" in data else COMPETITION_CATALOG
        tta = data.get("tta", ())  # checked by Ensemble
        tta = tuple(tta) if isinstance(tta, list) else tta
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"ensemble file {path} is malformed: {type(error).__name__}: {error}") from error
    bad = [n for n, w in weights.items() if len(w) != len(members)] + [
        n for n in (*weights, *thresholds) if n not in catalog.names
    ]
    if len(calibrations) != len(members) or bad:
        raise ValueError(
            f"ensemble file {path} is inconsistent: {len(members)} members, {len(calibrations)} "
            f"calibrations, bad classes {sorted(set(bad))}"
        )
    try:
        return Ensemble(members, calibrations, weights, thresholds, radius, data.get("val_fbeta", {}), catalog, tta)
    except (TypeError, ValueError) as error:
        raise ValueError(f"ensemble file {path}: {error}") from error
