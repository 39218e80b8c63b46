"""The competition metric: per-type F-beta of KD-tree matched picks, reproduced exactly.

Kaggle's scorer (COMPETITION.md 1.3, 1.4): submission rows of experiments outside the solution are
dropped; a reference is matched if any candidate of its experiment and type lies within
``base_radius * distance_multiplier`` Angstrom (inclusive); per type, ``tp`` counts matched
references, ``fp = candidates - tp`` (negative when one candidate matches two references, as on the
host), ``fn = references - tp``, summed over experiments; the weighted F-beta sum is divided by the
weight of all six types (7).

Instead of two KD-trees per (experiment, type), one tree holds every candidate with its
(experiment, type) group as a 4th coordinate, spaced wider than any search radius, and each reference
asks for its nearest candidate within a slightly larger radius. The inclusive test is then made on
the squared distance summed as scipy sums it, ``(dx*dx + dy*dy) + dz*dz <= radius * radius``, so
points on the radius (or a rounding step from it) come out as on the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

__all__ = ["ParticipantVisibleError", "SCORE_TABLE_COLUMNS", "score", "score_table"]

SCORE_TABLE_COLUMNS = ("particle_type", "tp", "fp", "fn", "precision", "recall", "fbeta", "weight")
_REQUIRED_COLUMNS = ("experiment", "particle_type", "x", "y", "z")
_XYZ = ["x", "y", "z"]


class ParticipantVisibleError(ValueError):
    """A submission error the host shows to the participant (e.g. an unknown particle type)."""


@dataclass(frozen=True)
class _TypeCounts:
    particle_type: str
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True)
class _Points:
    """Rows of one table as arrays: (N, 3) x, y, z in Angstrom, experiment and catalog type codes."""

    xyz_angstrom: np.ndarray
    experiment_code: np.ndarray
    type_code: np.ndarray  # index into the catalog names, -1 for an unknown type
    type_order: np.ndarray  # the distinct type codes in order of first appearance
    row_labels: pd.Index


def _check_columns(frame: pd.DataFrame, what: str) -> None:
    missing = [c for c in _REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {', '.join(missing)}")


def _type_codes(types: pd.Series, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(catalog code per row or -1, catalog code per distinct value in order of first appearance)."""
    codes, uniques = pd.factorize(types, use_na_sentinel=False)
    lookup = np.array([names.index(u) if u in names else -1 for u in uniques], dtype=np.int64)
    return lookup[codes], lookup


def _points(frame: pd.DataFrame, experiment_code: np.ndarray, what: str, names: tuple[str, ...]) -> _Points:
    try:
        xyz = frame[_XYZ].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: columns x, y, z must be numeric ({error})") from error
    return _Points(xyz.reshape(-1, 3), experiment_code, *_type_codes(frame["particle_type"], names), frame.index)


def _check_no_duplicates(solution: pd.DataFrame, x_angstrom: np.ndarray) -> None:
    """The host asserts no two solution rows share (experiment, x, y, z)."""
    x_sorted = np.sort(x_angstrom)
    same = (x_sorted[1:] == x_sorted[:-1]) | (np.isnan(x_sorted[1:]) & np.isnan(x_sorted[:-1]))
    if not same.any():  # fast path: all x differ, so no row can repeat
        return
    duplicated = solution.duplicated(subset=["experiment", *_XYZ])
    if duplicated.any():
        rows = solution.loc[duplicated, ["experiment", *_XYZ]].head(5)
        listing = "; ".join(f"row {i}: {tuple(r)}" for i, r in zip(rows.index, rows.values))
        raise ValueError(f"solution has {int(duplicated.sum())} duplicate (experiment, x, y, z) row(s): {listing}")


def _encode(
    solution: pd.DataFrame, submission: pd.DataFrame, names: tuple[str, ...]
) -> tuple[_Points, _Points, list[str]]:
    """Validate both tables, keep the submission rows of solution experiments, encode as arrays.

    Returns (references, candidates, solution types in order of first appearance).
    """
    _check_columns(solution, "solution")
    _check_columns(submission, "submission")
    both = pd.concat([solution["experiment"], submission["experiment"]], ignore_index=True)
    experiment_code = pd.factorize(both, use_na_sentinel=False)[0]
    refs = _points(solution, experiment_code[: len(solution)], "solution", names)
    if (refs.type_code < 0).any():
        unknown = sorted(set(solution["particle_type"][refs.type_code < 0]), key=str)
        raise ValueError(f"solution has unknown particle type(s) {unknown}")
    _check_no_duplicates(solution, refs.xyz_angstrom[:, 0])
    in_solution = np.zeros(int(experiment_code.max(initial=-1)) + 1, dtype=bool)
    in_solution[refs.experiment_code] = True
    keep = in_solution[experiment_code[len(solution) :]]
    kept = submission if keep.all() else submission.loc[keep]
    cands = _points(kept, experiment_code[len(solution) :][keep], "submission", names)
    if (cands.type_code < 0).any():
        bad = sorted(set(kept["particle_type"][cands.type_code < 0]), key=str)
        raise ParticipantVisibleError(f"Unrecognized `particle_type` {bad}; expected one of {', '.join(names)}")
    return refs, cands, [names[c] for c in refs.type_order]


def _groups(points: _Points, n_types: int) -> np.ndarray:
    """One integer per (experiment, type): points match only within a group."""
    return points.experiment_code.astype(np.int64) * n_types + points.type_code


def _usable(points: _Points, groups: np.ndarray, other_groups: np.ndarray, what: str) -> np.ndarray:
    """Mask of finite rows; raise, as the host's KD-tree does, for a non-finite row that meets a
    non-empty group of the other table."""
    finite = np.isfinite(points.xyz_angstrom).all(axis=1)
    if not finite.all():
        bad = ~finite & np.isin(groups, other_groups)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{what} row {points.row_labels[row]}: x, y, z must be finite, got {tuple(points.xyz_angstrom[row])}"
            )
    return finite


def _matched(refs: _Points, cands: _Points, distance_multiplier: float, catalog: ParticleCatalog) -> np.ndarray:
    """Mask of references with a candidate of the same group within the type's radius (<=)."""
    ref_group, cand_group = _groups(refs, len(catalog)), _groups(cands, len(catalog))
    ref_ok = _usable(refs, ref_group, cand_group, "solution")
    cand_ok = _usable(cands, cand_group, ref_group, "submission")
    matched = np.zeros(len(ref_group), dtype=bool)
    if not ref_ok.any() or not cand_ok.any():
        return matched
    radius = np.array([p.radius_angstrom * distance_multiplier for p in catalog])[refs.type_code]
    query_radius = float(radius.max()) * (1.0 + 1e-6) + 1e-6  # proposes a superset; exact test below
    separation = float(math.ceil(4.0 * query_radius + 1.0))  # groups never meet in the 4th axis
    ref_index = np.flatnonzero(ref_ok)
    cand_xyz, cand_group = cands.xyz_angstrom[cand_ok], cand_group[cand_ok]
    tree = cKDTree(np.column_stack([cand_xyz, cand_group * separation]), balanced_tree=False, compact_nodes=False)
    ref4 = np.column_stack([refs.xyz_angstrom[ref_index], ref_group[ref_index] * separation])
    nearest = tree.query(ref4, k=1, distance_upper_bound=query_radius, workers=-1)[1]
    found = nearest < len(cand_xyz)
    ref_index, nearest = ref_index[found], nearest[found]
    diff = refs.xyz_angstrom[ref_index] - cand_xyz[nearest]
    # scipy's squared distance, summed in its order, against radius * radius: inclusive and exact
    squared = (diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1]) + diff[:, 2] * diff[:, 2]
    close = (squared <= radius[ref_index] * radius[ref_index]) & (cand_group[nearest] == ref_group[ref_index])
    matched[ref_index[close]] = True
    return matched


def _count_by_type(
    solution: pd.DataFrame, submission: pd.DataFrame, distance_multiplier: float, catalog: ParticleCatalog
) -> list[_TypeCounts]:
    """Micro-averaged tp, fp, fn per solution type, in the solution's order of first appearance."""
    if not (math.isfinite(distance_multiplier) and distance_multiplier >= 0):
        raise ValueError(f"distance_multiplier must be finite and >= 0, got {distance_multiplier}")
    names = catalog.names
    refs, cands, order = _encode(solution, submission, names)
    matched = _matched(refs, cands, distance_multiplier, catalog)
    n_types = len(names)
    tp = np.bincount(refs.type_code[matched], minlength=n_types)
    n_ref = np.bincount(refs.type_code, minlength=n_types)
    n_cand = np.bincount(cands.type_code, minlength=n_types)
    codes = [names.index(name) for name in order]
    return [_TypeCounts(names[c], int(tp[c]), int(n_cand[c] - tp[c]), int(n_ref[c] - tp[c])) for c in codes]


def _fbeta(tp: int, fp: int, fn: int, beta: float) -> tuple[float, float, float]:
    """Precision, recall and F-beta with the host's expressions (0 where undefined)."""
    precision = tp / (tp + fp) if tp + fp > 0 else 0
    recall = tp / (tp + fn) if tp + fn > 0 else 0
    if precision + recall > 0:
        fbeta = (1 + beta**2) * (precision * recall) / (beta**2 * precision + recall)
    else:
        fbeta = 0.0
    return float(precision), float(recall), float(fbeta)


def _total(counts: list[_TypeCounts], beta: float, catalog: ParticleCatalog) -> float:
    """Weighted F-beta sum in the host's order, divided by the weight of every type of the catalog."""
    aggregate = 0.0
    for c in counts:
        aggregate += _fbeta(c.tp, c.fp, c.fn, beta)[2] * catalog.get(c.particle_type).weight
    return aggregate / catalog.total_weight if catalog.total_weight else 0.0


def score_table(
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    distance_multiplier: float = 0.5,
    beta: float = 4,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> pd.DataFrame:
    """Per-type counts and F-beta, one row per particle type in catalog order.

    Types absent from the solution are not scored by the host: their row is all zero (their
    candidates are not counted as false positives). The total, identical to :func:`score`, is in
    ``table.attrs["score"]``.

    Args:
        solution: reference picks, columns experiment, particle_type, x, y, z (Angstrom).
        submission: candidate picks, same columns; other columns are ignored.
        distance_multiplier: match radius as a fraction of the particle radius (Kaggle: 0.5).
        beta: F-beta's beta (Kaggle: 4).
        catalog: the particle types, radii and weights (default the competition's six).

    Returns:
        A frame with columns ``SCORE_TABLE_COLUMNS``.

    Raises:
        ParticipantVisibleError: a submission row of a solution experiment has an unknown type.
        ValueError: duplicate solution rows, missing columns, unknown solution types, non-finite or
            non-numeric coordinates where the host's KD-tree would see them.
    """
    counts = _count_by_type(solution, submission, distance_multiplier, catalog)
    by_name = {c.particle_type: c for c in counts}
    rows = []
    for p in catalog:
        c = by_name.get(p.name, _TypeCounts(p.name, 0, 0, 0))
        precision, recall, fbeta = _fbeta(c.tp, c.fp, c.fn, beta)
        rows.append((p.name, c.tp, c.fp, c.fn, precision, recall, fbeta, p.weight))
    table = pd.DataFrame(rows, columns=list(SCORE_TABLE_COLUMNS))
    table.attrs["score"] = _total(counts, beta, catalog)
    return table


def score(
    solution: pd.DataFrame,
    submission: pd.DataFrame,
    row_id_column_name: str = "id",
    distance_multiplier: float = 0.5,
    beta: float = 4,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> float:
    """The competition score: the host's weighted F-beta, bit for bit.

    Args:
        solution: reference picks, columns experiment, particle_type, x, y, z (Angstrom).
        submission: candidate picks, same columns; other columns are ignored.
        row_id_column_name: the host's row id column; unused by the computation, as on the host.
        distance_multiplier: match radius as a fraction of the particle radius (Kaggle: 0.5).
        beta: F-beta's beta (Kaggle: 4).

    Returns:
        The score in [0, 1] (the host's quirks can push it slightly outside in degenerate cases).

    Raises:
        ParticipantVisibleError: a submission row of a solution experiment has an unknown type.
        ValueError: as :func:`score_table`.
    """
    del row_id_column_name  # part of Kaggle's scorer signature only
    return _total(_count_by_type(solution, submission, distance_multiplier, catalog), beta, catalog)
