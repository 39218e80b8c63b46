"""Ensembles of models of different kinds: put each member's scores on one scale, then vote or choose per class.

Members of one kind (same task, stride, level) are averaged map by map in ``cryokit.inference``. Members of
different kinds (a U-Net's softmax probabilities, the detector's objectness x class) score on different
scales, so their picks are merged only after each member's scores are mapped, per class, onto one scale.

Members of close quality vote. A member is a *peer* of the *lead* (the member of the best weighted
validation F4) when it scores within ``peer_margin`` (0.1 by default) of it on validation. Each peer's
scores of a class are divided by its own tuned validation threshold (1 = "this member would keep it"), the
peers' picks are clustered and their scaled scores averaged with equal weights (a peer that missed the pick
adds 0; a peer that finds none of a class on validation has no vote on it), and a pick is kept from 1 on:
times ``threshold_scale``, as the members' own thresholds are. A pick
every peer scores at its threshold is kept; one that a single peer of two finds must score twice its
threshold there. Nothing is tuned on the merged scores, which is why the vote transfers: on the randomized
simulator's runs, the U-Net and the detector fitted on one run and scored on the two others, the vote was
above the better member on each of 12 folds over four pairings of TTA (by 0.002 to 0.027; with both
flipped 0.896 against the detector's 0.875 on the mean), where the same merge with thresholds tuned on the
fitting run's merged scores moved the mean by -0.014 to +0.017 (docs/BENCHMARKS.md, "Ensemble vote"). The
margin keeps weak members out: U-Net and detector differed by 0.00 to 0.07 on one validation run, the DoG
baseline lay 0.35 to 0.54 under either, and forced into the vote it cost 0.11 to 0.14 held out. A further peer
votes only if the vote on validation scores at least as well with it. The margin cannot see everything: on
the fixed simulator's runs the vote gained in three pairings of TTA out of four and lost 0.016 to the flipped
U-Net beside the unflipped detector, 0.034 weaker held out but within 0.02 of it on the fitting run.

Without a peer (or with ``vote=False``) each class keeps the lead alone unless another member alone, or
the members merged on scores calibrated per class (the probability that a pick is a true positive, fitted
on validation runs by isotonic regression, made strictly increasing so it reorders none of a member's picks)
and weighted by validation F4, beats the lead on validation by more than finding ``min_gain_references``
more of that class's validation references would (2 by default: 2 / 18 = 0.11 F4 for the 18
beta-galactosidases of a simulated run). One validation run holds tens of particles per class, so its
per-class F4 moves by a particle or two from run to run; a weak member that wins a class there by less
than that loses it on other runs. Thresholds are then tuned on the chosen scores. ``Ensemble`` is plain data
(JSON), never code; it records the particle catalog it was fitted on (the competition's six, or a copick
project's objects).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression
from scipy.spatial import cKDTree

from cryokit.io.atomic import atomic_write_text
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.postprocess import PICK_SCORE_COLUMNS, empty_scored_picks, merge_picks
from cryokit.thresholds import (
    THRESHOLD_SCALE,
    ThresholdCurve,
    threshold_curves,
    thresholds_of_curves,
    weighted_score,
)

__all__ = [
    "DEFAULT_MIN_GAIN_REFERENCES",
    "DEFAULT_PEER_MARGIN",
    "ScoreCalibration",
    "Ensemble",
    "candidate_hits",
    "fit_calibration",
    "fit_ensemble",
    "ensemble_picks",
    "idle_members",
    "without_members",
    "save_ensemble",
    "load_ensemble",
]

# Added per unit of raw score so the calibrated score is strictly increasing (isotonic fits are flat
# in places); far below any difference that matters for a threshold.
_TIE_BREAK = 1e-6
# How many validation references' worth of F4 a class must gain to leave the lead member (module docstring).
DEFAULT_MIN_GAIN_REFERENCES = 2.0
# How far under the lead's weighted validation F4 a member may score and still vote (module docstring).
DEFAULT_PEER_MARGIN = 0.1


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
        val_fbeta: per class, validation F4 of each member (at its optimum) and of the ensemble (at its thresholds
            before ``threshold_scale``): the record of the choice.
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


def _threshold_scaling(curves: Mapping[str, ThresholdCurve]) -> ScoreCalibration:
    """Per class, scores divided by the member's best validation threshold (knots (0, 1) -> (0, 1 / t)), from
    its validation ``curves``: scores are probabilities in [0, 1], so the line covers them all and keeps their
    order."""
    thresholds = thresholds_of_curves(curves)
    return ScoreCalibration(
        {name: ((0.0, 1.0), (0.0, 1.0 / max(float(t), 1e-6))) for name, t in thresholds.items() if t is not None}
    )


def _choose_per_class(
    calibrated: Sequence[pd.DataFrame],
    member_f4: Sequence[Mapping[str, float]],
    lead: int,
    solution: pd.DataFrame,
    merge_radius_fraction: float,
    catalog: ParticleCatalog,
    min_gain_references: float,
) -> dict[str, tuple[float, ...]]:
    """Per class of ``solution``, the weights of the lead alone, or of the choice (another member alone, the
    calibrated merge weighted by validation F4) that beats it on validation by more than the margin."""
    classes = [n for n in catalog.names if n in set(solution["particle_type"])]
    by_f4 = {}
    for name in classes:
        f4 = np.array([m.get(name, 0.0) for m in member_f4])
        by_f4[name] = tuple(map(float, f4 / f4.sum())) if f4.sum() > 0 else tuple([1.0 / len(f4)] * len(f4))
    merged = _merge(calibrated, by_f4, merge_radius_fraction, catalog)
    merged_f4 = {n: c.best()[1] for n, c in threshold_curves(merged, solution, catalog=catalog).items()}
    references = solution["particle_type"].value_counts()

    def alone(index):
        return tuple(1.0 if i == index else 0.0 for i in range(len(member_f4)))

    weights = {}
    for name in classes:
        f4 = [m.get(name, 0.0) for m in member_f4]
        choices = [(f4[i], alone(i)) for i in range(len(f4)) if i != lead] + [(merged_f4.get(name, 0.0), by_f4[name])]
        best_f4, best_weights = max(choices, key=lambda choice: choice[0])  # the first of equals
        gained = best_f4 > f4[lead] + min_gain_references / references[name]  # that many more references found
        weights[name] = best_weights if gained else alone(lead)
    return weights


def _vote_weights(
    voters: Sequence[int], member_f4: Sequence[Mapping[str, float]], classes: Sequence[str]
) -> dict[str, tuple[float, ...]]:
    """Per class, equal weights over the ``voters`` that find some of it on validation (all voters if none
    does): a member blind to a class would only halve the others' scores there."""
    weights = {}
    for name in classes:
        finding = [i for i in voters if member_f4[i].get(name, 0.0) > 0] or list(voters)
        weights[name] = tuple(1.0 / len(finding) if i in finding else 0.0 for i in range(len(member_f4)))
    return weights


def _vote_curves(
    scaled: Sequence[pd.DataFrame],
    weights: Mapping[str, Sequence[float]],
    solution: pd.DataFrame,
    merge_radius_fraction: float,
    catalog: ParticleCatalog,
) -> dict[str, ThresholdCurve]:
    """Validation threshold curves of the merge of threshold-scaled picks with ``weights`` (``_vote_weights``)."""
    return threshold_curves(_merge(scaled, weights, merge_radius_fraction, catalog), solution, catalog=catalog)


def _vote_f4(curves: Mapping[str, ThresholdCurve], catalog: ParticleCatalog) -> float:
    """Weighted validation F4 of a vote, each class kept from 1 (the voters' own thresholds) on."""
    return weighted_score(curves, {n: 1.0 for n in curves}, catalog=catalog)


def fit_ensemble(
    member_candidates: Sequence[pd.DataFrame],
    solution: pd.DataFrame,
    members: Sequence[str] | None = None,
    merge_radius_fraction: float = 0.5,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
    min_gain_references: float = DEFAULT_MIN_GAIN_REFERENCES,
    vote: bool = True,
    peer_margin: float = DEFAULT_PEER_MARGIN,
    threshold_scale: float = THRESHOLD_SCALE,
) -> Ensemble:
    """Fit how to merge the members' picks on the validation ``solution`` (module docstring): the vote of the
    lead's peers if it has any, else a choice per class; record each member's and the ensemble's validation F4.

    Args:
        member_candidates: every scored candidate of each member on the validation runs (no thresholds);
            ``attrs["tta"]`` (``group_candidates`` sets it) is recorded as the member's TTA.
        solution: the validation runs' reference picks.
        members: names for the record (default ``member 0``, ``member 1``, ...).
        catalog: the particles of the candidates and the solution (radii for matching, weights).
        min_gain_references: without a vote, a class leaves the lead member only for a choice whose validation
            F4 is higher by more than ``min_gain_references / n``, ``n`` the class's validation references
            (0: whatever scores higher on validation).
        vote: let the lead's peers vote; False: the choice per class whatever the members.
        peer_margin: how far under the lead's weighted validation F4 a member may score and still vote.
        threshold_scale: for the runs the ensemble will predict, the vote's threshold on the scaled scores, or
            the factor of the thresholds tuned per class (``cryokit.thresholds.THRESHOLD_SCALE``; 1: the
            validation optimum). A class that no member finds on validation keeps its threshold unscaled.
    """
    if not min_gain_references >= 0:
        raise ValueError(f"min_gain_references must be >= 0, got {min_gain_references}")
    if not peer_margin >= 0:
        raise ValueError(f"peer_margin must be >= 0, got {peer_margin}")
    if not member_candidates:
        raise ValueError("an ensemble needs at least one member")
    names = tuple(members) if members is not None else tuple(f"member {i}" for i in range(len(member_candidates)))
    if len(names) != len(member_candidates):
        raise ValueError(f"{len(names)} member names for {len(member_candidates)} members")
    classes = [n for n in catalog.names if n in set(solution["particle_type"])]
    member_curves = [threshold_curves(c, solution, catalog=catalog) for c in member_candidates]
    member_f4 = [{n: curve.best()[1] for n, curve in curves.items()} for curves in member_curves]
    weight_sum = sum(catalog.get(n).weight for n in classes) or 1.0
    total = [sum(catalog.get(n).weight * m.get(n, 0.0) for n in classes) / weight_sum for m in member_f4]
    lead = int(np.argmax(total))  # the first of equals: a model with itself is that model
    # Peers by validation F4, best first; the lead and the next vote, each further one only if it keeps the
    # vote's validation F4 at least where it was (ties too: agreement adds recall held out).
    peers = sorted((i for i, t in enumerate(total) if total[lead] - t <= peer_margin), key=lambda i: -total[i])
    if vote and len(peers) > 1:
        calibrations = tuple(_threshold_scaling(curves) for curves in member_curves)
        scaled = [cal(c) for cal, c in zip(calibrations, member_candidates)]
        voters = peers[:2]
        weights = _vote_weights(voters, member_f4, classes)
        curves = _vote_curves(scaled, weights, solution, merge_radius_fraction, catalog)
        for candidate in peers[2:]:
            more = _vote_weights([*voters, candidate], member_f4, classes)
            with_it = _vote_curves(scaled, more, solution, merge_radius_fraction, catalog)
            if _vote_f4(with_it, catalog) >= _vote_f4(curves, catalog):
                voters, weights, curves = [*voters, candidate], more, with_it
        optimum = {n: 1.0 for n in classes}  # each voter's own threshold: nothing tuned on the merged scores
        found = {n: any(member_f4[i].get(n, 0.0) > 0 for i in voters) for n in classes}  # else kept unscaled
        thresholds = {n: threshold_scale if found[n] else 1.0 for n in classes}
    else:
        calibrations = tuple(fit_calibration(c, solution, catalog=catalog) for c in member_candidates)
        calibrated = [cal(c) for cal, c in zip(calibrations, member_candidates)]
        weights = _choose_per_class(
            calibrated, member_f4, lead, solution, merge_radius_fraction, catalog, min_gain_references
        )
        curves = threshold_curves(
            _merge(calibrated, weights, merge_radius_fraction, catalog), solution, catalog=catalog
        )
        optimum = {n: curve.best()[0] for n, curve in curves.items()}
        thresholds = thresholds_of_curves(curves, threshold_scale)
    val_fbeta = {
        name: {
            **{member: m.get(name, 0.0) for member, m in zip(names, member_f4)},
            "ensemble": curves[name].at(optimum[name])[5],
        }
        for name in classes
    }
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


def idle_members(ensemble: Ensemble) -> tuple[int, ...]:
    """The members the ensemble gives no weight on any class (outside the vote): their picks change nothing."""
    return tuple(i for i in range(len(ensemble.members)) if not any(w[i] for w in ensemble.weights.values()))


def without_members(ensemble: Ensemble, dropped: Sequence[int]) -> Ensemble:
    """``ensemble`` without the ``dropped`` members, which must be idle (``idle_members``): the merge of the
    others is the same, and whoever predicts for it need not load or run the dropped ones."""
    dropped = set(dropped)
    busy = sorted(dropped - set(idle_members(ensemble)))
    if busy:
        raise ValueError(f"members {busy} ({', '.join(ensemble.members[i] for i in busy)}) carry weight: not dropped")
    kept = [i for i in range(len(ensemble.members)) if i not in dropped]
    if not kept:
        raise ValueError("an ensemble needs at least one member")
    return replace(
        ensemble,
        members=tuple(ensemble.members[i] for i in kept),
        calibrations=tuple(ensemble.calibrations[i] for i in kept),
        weights={n: tuple(w[i] for i in kept) for n, w in ensemble.weights.items()},
        tta=tuple(ensemble.tta[i] for i in kept),
    )


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
