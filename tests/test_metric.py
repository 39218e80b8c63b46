"""Tests for cryokit.metric against an independent, literal copy of the host's algorithm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import KDTree

from cryokit.metric import SCORE_TABLE_COLUMNS, ParticipantVisibleError, score, score_table
from cryokit.particles import PARTICLE_NAMES, PARTICLES, SCORED_PARTICLE_NAMES

RADIUS = {
    "apo-ferritin": 60,
    "beta-amylase": 65,
    "beta-galactosidase": 90,
    "ribosome": 150,
    "thyroglobulin": 130,
    "virus-like-particle": 135,
}
WEIGHT = {
    "apo-ferritin": 1,
    "beta-amylase": 0,
    "beta-galactosidase": 2,
    "ribosome": 1,
    "thyroglobulin": 2,
    "virus-like-particle": 1,
}
COLUMNS = ["experiment", "particle_type", "x", "y", "z"]


# --- the reference: the host's algorithm written out literally --------------------------------


def reference_counts(solution, submission, distance_multiplier=0.5):
    radius = {k: v * distance_multiplier for k, v in RADIUS.items()}
    experiments = set(solution["experiment"].unique())
    submission = submission.loc[submission["experiment"].isin(experiments)]
    if not set(submission["particle_type"].unique()).issubset(set(WEIGHT)):
        raise ParticipantVisibleError("Unrecognized `particle_type`.")
    assert solution.duplicated(subset=["experiment", "x", "y", "z"]).sum() == 0
    totals = {t: [0, 0, 0] for t in solution["particle_type"].unique()}
    for experiment in experiments:
        for t in solution["particle_type"].unique():
            sel = (solution["experiment"] == experiment) & (solution["particle_type"] == t)
            refs = solution.loc[sel, ["x", "y", "z"]].values
            sel = (submission["experiment"] == experiment) & (submission["particle_type"] == t)
            cands = submission.loc[sel, ["x", "y", "z"]].values
            if len(refs) == 0:
                tp, fp, fn = 0, len(cands), 0
            elif len(cands) == 0:
                tp, fp, fn = 0, 0, len(refs)
            else:
                raw = KDTree(cands).query_ball_tree(KDTree(refs), r=radius[t])
                matched = set(j for hits in raw for j in hits)
                tp, fp, fn = len(matched), len(cands) - len(matched), len(refs) - len(matched)
            totals[t][0] += tp
            totals[t][1] += fp
            totals[t][2] += fn
    return totals


def reference_score(solution, submission, distance_multiplier=0.5, beta=4):
    total = 0.0
    for t, (tp, fp, fn) in reference_counts(solution, submission, distance_multiplier).items():
        precision = tp / (tp + fp) if tp + fp > 0 else 0
        recall = tp / (tp + fn) if tp + fn > 0 else 0
        f = (1 + beta**2) * (precision * recall) / (beta**2 * precision + recall) if precision + recall > 0 else 0.0
        total += f * WEIGHT.get(t, 1.0)
    return total / sum(WEIGHT.values())


def assert_matches_reference(solution, submission, distance_multiplier=0.5, beta=4):
    expected = reference_score(solution, submission, distance_multiplier, beta)
    got = score(solution, submission, distance_multiplier=distance_multiplier, beta=beta)
    assert got == expected  # bit for bit, not approx
    table = score_table(solution, submission, distance_multiplier, beta).set_index("particle_type")
    counts = reference_counts(solution, submission, distance_multiplier)
    for name in PARTICLE_NAMES:
        assert tuple(table.loc[name, ["tp", "fp", "fn"]]) == tuple(counts.get(name, (0, 0, 0)))
    return got


# --- builders ---------------------------------------------------------------------------------


def frame(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def random_case(rng, n_experiments=4, refs_per_type=6):
    """A solution plus a tricky submission: jitter near the radius, duplicates, strays, extras."""
    types = [t for t in PARTICLE_NAMES if rng.random() < 0.8]
    experiments = [f"TS_{i}" for i in range(n_experiments)]
    sol, sub = [], []
    for e in experiments:
        for t in types:
            n = int(rng.integers(0, refs_per_type + 1))
            xyz = rng.uniform([0, 0, 0], [630, 630, 184], size=(n, 3)).round(1) * 10
            sol += [(e, t, *p) for p in xyz]
            r = RADIUS[t] * 0.5
            for p in xyz:
                k = int(rng.integers(0, 4))  # 0..3 candidates per reference (3 -> duplicates)
                direction = rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                step = r * rng.choice([0.3, 0.999999, 1.0, 1.000001, 1.5])
                c = p + direction * step
                sub += [(e, t, *c)] * k
            for _ in range(int(rng.integers(0, 3))):  # strays, sometimes of another type
                sub.append((e, rng.choice(PARTICLE_NAMES), *rng.uniform(0, 6300, size=3)))
    sub += [("TS_extra", "not-a-particle", 1.0, 2.0, 3.0), ("TS_extra", "ribosome", 0.0, 0.0, 0.0)]
    solution = frame(sol).drop_duplicates(subset=["experiment", "x", "y", "z"])
    submission = frame(sub).sample(frac=1.0, random_state=int(rng.integers(1 << 31)))
    return solution.reset_index(drop=True), submission.reset_index(drop=True)


def perfect_case(n_per_type=5, types=PARTICLE_NAMES, experiments=("TS_a", "TS_b")):
    rng = np.random.default_rng(7)
    rows = [(e, t, *rng.uniform(0, 6000, size=3)) for e in experiments for t in types for _ in range(n_per_type)]
    return frame(rows)


# --- sanity values (COMPETITION.md 1.4) -------------------------------------------------------


def test_perfect_picks_score_one():
    solution = perfect_case()
    assert score(solution, solution.copy()) == 1.0
    assert assert_matches_reference(solution, solution.copy()) == 1.0


def test_empty_submission_scores_zero():
    solution = perfect_case()
    empty = frame([])
    assert score(solution, empty) == 0.0
    table = score_table(solution, empty)
    assert table["tp"].sum() == 0 and table["fp"].sum() == 0
    assert table.set_index("particle_type").loc["ribosome", "fn"] == 10


def test_missing_weight_two_type_in_solution_caps_at_five_sevenths():
    types = [t for t in PARTICLE_NAMES if t != "thyroglobulin"]
    solution = perfect_case(types=types)
    thyroglobulin = perfect_case(types=("thyroglobulin",))
    submission = pd.concat([solution, thyroglobulin])  # thyroglobulin is never looked at
    assert score(solution, submission) == pytest.approx(5 / 7, abs=1e-15)
    assert_matches_reference(solution, submission)


def test_one_extra_false_positive_per_reference():
    solution = perfect_case()
    strays = solution.assign(x=solution["x"] + 1000.0)  # far from every reference of any type
    submission = pd.concat([solution, strays], ignore_index=True)
    expected = 17 * 0.5 * 1 / (16 * 0.5 + 1)
    table = score_table(solution, submission)
    scored = table[table["particle_type"].isin(SCORED_PARTICLE_NAMES)]
    assert (scored["precision"] == 0.5).all() and (scored["recall"] == 1.0).all()
    assert scored["fbeta"].to_numpy() == pytest.approx(expected, abs=1e-15)
    assert score(solution, submission) == pytest.approx(expected, abs=1e-15)
    assert_matches_reference(solution, submission)


# --- exactness at the radius --------------------------------------------------------------------


@pytest.mark.parametrize("p", PARTICLES, ids=lambda p: p.name)
def test_candidate_exactly_on_radius_matches_and_just_outside_does_not(p):
    r = p.radius_angstrom * 0.5
    solution = frame([("TS", p.name, 100.0, 200.0, 300.0), ("TS", "ribosome", 5000.0, 0.0, 0.0)])
    on = frame([("TS", p.name, 100.0 + r, 200.0, 300.0)])
    off = frame([("TS", p.name, 100.0 + r + 1e-7, 200.0, 300.0)])
    assert score_table(solution, on).set_index("particle_type").loc[p.name, "tp"] == 1
    assert score_table(solution, off).set_index("particle_type").loc[p.name, "tp"] == 0
    assert_matches_reference(solution, on)
    assert_matches_reference(solution, off)


def test_apo_ferritin_at_30_angstrom_exactly():
    solution = frame([("TS", "apo-ferritin", 0.0, 0.0, 0.0)])
    hit = frame([("TS", "apo-ferritin", 30.0, 0.0, 0.0)])
    miss = frame([("TS", "apo-ferritin", 30.0000001, 0.0, 0.0)])
    assert tuple(score_table(solution, hit).iloc[0][["tp", "fp", "fn"]]) == (1, 0, 0)
    assert tuple(score_table(solution, miss).iloc[0][["tp", "fp", "fn"]]) == (0, 1, 1)


def test_pythagorean_distance_on_radius_matches():
    solution = frame([("TS", "apo-ferritin", 0.0, 0.0, 0.0)])
    on = frame([("TS", "apo-ferritin", 18.0, 24.0, 0.0), ("TS", "apo-ferritin", 0.0, 18.0, -24.0)])
    assert tuple(score_table(solution, on).iloc[0][["tp", "fp", "fn"]]) == (1, 1, 0)
    assert_matches_reference(solution, on)


def test_near_radius_random_directions_agree_with_host():
    rng = np.random.default_rng(11)
    refs = rng.uniform(0, 6000, size=(300, 3))
    direction = rng.normal(size=(300, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    cands = refs + direction * 30.0 * (1 + rng.normal(scale=3e-16, size=(300, 1)))
    solution = frame([("TS", "apo-ferritin", *p) for p in refs])
    submission = frame([("TS", "apo-ferritin", *p) for p in cands])
    tp = score_table(solution, submission).iloc[0]["tp"]
    assert 0 < tp < 300  # the case really sits on the boundary
    assert_matches_reference(solution, submission)


def test_rounding_at_the_radius_follows_scipys_summation_order():
    # Pairs whose squared distance lands on either side of r*r depending on how dx², dy², dz² are
    # summed; scipy sums (dx² + dy²) + dz², and so must we.
    rng = np.random.default_rng(5)
    r = 30.0
    ref = np.array([1234.5, 2345.25, 345.125])
    direction = rng.normal(size=(20000, 3))
    cands = ref + direction / np.linalg.norm(direction, axis=1, keepdims=True) * r
    sq = (cands - ref) ** 2
    left, right = (sq[:, 0] + sq[:, 1]) + sq[:, 2], sq[:, 0] + (sq[:, 1] + sq[:, 2])
    tricky = np.nonzero((left <= r * r) != (right <= r * r))[0]
    assert len(tricky) > 10
    # one experiment per pair, all sharing the same reference position
    solution = frame([(f"TS_{i}", "apo-ferritin", *ref) for i in tricky])
    submission = frame([(f"TS_{i}", "apo-ferritin", *cands[i]) for i in tricky])
    assert score_table(solution, submission).iloc[0]["tp"] == int((left[tricky] <= r * r).sum())
    assert_matches_reference(solution, submission)


def test_each_type_uses_its_own_radius():
    # 50 A is inside ribosome's 75 A but outside apo-ferritin's 30 A; a ribosome reference at the same
    # spot must not lend its candidate to the apo-ferritin reference either.
    solution = frame([("TS", "apo-ferritin", 0.0, 0.0, 0.0), ("TS", "ribosome", 0.0, 0.0, 100.0)])
    submission = frame(
        [
            ("TS", "apo-ferritin", 50.0, 0.0, 0.0),
            ("TS", "ribosome", 50.0, 0.0, 100.0),
            ("TS", "ribosome", 0.0, 0.0, 0.0),
        ]
    )
    table = score_table(solution, submission).set_index("particle_type")
    assert table.loc["apo-ferritin", ["tp", "fp", "fn"]].tolist() == [0, 1, 1]
    assert table.loc["ribosome", ["tp", "fp", "fn"]].tolist() == [1, 1, 0]
    assert_matches_reference(solution, submission)


def test_nearest_candidate_decides_when_several_are_close():
    solution = frame([("TS", "thyroglobulin", 1000.0, 1000.0, 500.0)])
    submission = frame([("TS", "thyroglobulin", 1000.0 + d, 1000.0, 500.0) for d in (70.0, -64.0, 66.0)])
    assert tuple(score_table(solution, submission).iloc[4][["tp", "fp", "fn"]]) == (1, 2, 0)
    assert_matches_reference(solution, submission)


def test_one_candidate_between_two_references_gives_two_tp_and_negative_fp():
    solution = frame([("TS", "apo-ferritin", 0.0, 0.0, 0.0), ("TS", "apo-ferritin", 60.0, 0.0, 0.0)])
    submission = frame([("TS", "apo-ferritin", 30.0, 0.0, 0.0)])
    row = score_table(solution, submission).iloc[0]
    assert (row["tp"], row["fp"], row["fn"]) == (2, -1, 0)
    assert row["precision"] == 2.0  # the host's quirk, reproduced
    assert_matches_reference(solution, submission)


# --- filtering and errors -----------------------------------------------------------------------


def test_unknown_type_raises_participant_visible_error():
    solution = perfect_case()
    submission = pd.concat([solution, frame([("TS_a", "ribosme", 1.0, 1.0, 1.0)])])
    with pytest.raises(ParticipantVisibleError, match="ribosme"):
        score(solution, submission)


def test_unknown_type_in_experiment_outside_solution_is_dropped_first():
    solution = perfect_case()
    submission = pd.concat([solution, frame([("TS_other", "ribosme", 1.0, 1.0, 1.0)])])
    assert score(solution, submission) == 1.0


def test_duplicate_solution_rows_raise():
    solution = perfect_case()
    solution = pd.concat([solution, solution.iloc[[3]]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate"):
        score(solution, solution)


def test_missing_column_is_named():
    solution = perfect_case()
    with pytest.raises(ValueError, match="submission is missing column.*particle_type"):
        score(solution, solution.drop(columns="particle_type"))


def test_types_absent_from_solution_and_extra_experiments_cost_nothing():
    solution = perfect_case(types=("ribosome",))
    extra = frame([("TS_a", "thyroglobulin", 1.0, 2.0, 3.0), ("TS_zzz", "ribosome", 1.0, 2.0, 3.0)])
    submission = pd.concat([solution, extra])
    assert score(solution, submission) == 1 / 7
    table = score_table(solution, submission).set_index("particle_type")
    assert table.loc["thyroglobulin", ["tp", "fp", "fn"]].tolist() == [0, 0, 0]
    assert table.loc["ribosome", ["tp", "fp", "fn"]].tolist() == [10, 0, 0]


def test_type_without_references_in_one_experiment_counts_as_false_positives():
    solution = frame([("TS_a", "ribosome", 0.0, 0.0, 0.0), ("TS_b", "apo-ferritin", 0.0, 0.0, 0.0)])
    submission = frame([("TS_b", "ribosome", 0.0, 0.0, 0.0), ("TS_a", "ribosome", 1.0, 0.0, 0.0)])
    table = score_table(solution, submission).set_index("particle_type")
    assert table.loc["ribosome", ["tp", "fp", "fn"]].tolist() == [1, 1, 0]
    assert table.loc["apo-ferritin", ["tp", "fp", "fn"]].tolist() == [0, 0, 1]
    assert_matches_reference(solution, submission)


def test_beta_amylase_has_no_effect_on_the_score():
    solution = perfect_case()
    without = solution[solution["particle_type"] != "beta-amylase"]
    assert score(solution, without) == 1.0
    table = score_table(solution, without).set_index("particle_type")
    assert table.loc["beta-amylase", ["tp", "fn", "weight"]].tolist() == [0, 10, 0]


def test_non_finite_candidate_raises_only_where_the_host_builds_a_tree():
    solution = frame([("TS", "ribosome", 0.0, 0.0, 0.0)])
    nan_in_scored_group = frame([("TS", "ribosome", 0.0, 0.0, np.nan)])
    with pytest.raises(ValueError, match="submission row 0"):
        score(solution, nan_in_scored_group)
    nan_elsewhere = frame([("TS", "ribosome", 0.0, 0.0, 0.0), ("TS", "beta-amylase", np.nan, 0, 0)])
    assert score(solution, nan_elsewhere) == 1 / 7
    assert_matches_reference(solution, nan_elsewhere)


def test_non_finite_reference_raises_only_if_its_group_has_candidates():
    solution = frame([("TS", "ribosome", 0.0, 0.0, 0.0), ("TS", "apo-ferritin", np.inf, 0.0, 0.0)])
    with pytest.raises(ValueError, match="solution row 1"):
        score(solution, frame([("TS", "apo-ferritin", 0.0, 0.0, 0.0)]))
    submission = frame([("TS", "ribosome", 0.0, 0.0, 0.0)])
    table = score_table(solution, submission).set_index("particle_type")
    assert table.loc["apo-ferritin", ["tp", "fp", "fn"]].tolist() == [0, 0, 1]
    assert_matches_reference(solution, submission)


def test_empty_solution_scores_zero():
    table = score_table(frame([]), perfect_case())
    assert table.attrs["score"] == 0.0
    assert (table[["tp", "fp", "fn"]].to_numpy() == 0).all()
    assert_matches_reference(frame([]), perfect_case())


def test_nullable_float_columns_are_accepted():
    solution = perfect_case()
    submission = solution.astype({"x": "Float64", "y": "Float64", "z": "Float64"})
    assert score(solution, submission) == 1.0


# --- score_table --------------------------------------------------------------------------------


def test_score_table_shape_values_and_total():
    solution = perfect_case(n_per_type=4)
    submission = solution.iloc[::2]  # half the references of every type and experiment
    table = score_table(solution, submission)
    assert tuple(table.columns) == SCORE_TABLE_COLUMNS
    assert table["particle_type"].tolist() == list(PARTICLE_NAMES)
    assert table["weight"].tolist() == [p.weight for p in PARTICLES]
    assert (table["tp"] == 4).all() and (table["fp"] == 0).all() and (table["fn"] == 4).all()
    assert (table["precision"] == 1.0).all() and (table["recall"] == 0.5).all()
    assert table["fbeta"].to_numpy() == pytest.approx(17 * 0.5 / (16 + 0.5))
    assert table.attrs["score"] == score(solution, submission)
    weighted = (table["fbeta"] * table["weight"]).sum() / 7
    assert table.attrs["score"] == pytest.approx(weighted, abs=1e-15)


def test_score_table_distance_multiplier_and_beta():
    solution = frame([("TS", "ribosome", 0.0, 0.0, 0.0), ("TS", "ribosome", 500.0, 0.0, 0.0)])
    submission = frame([("TS", "ribosome", 100.0, 0.0, 0.0), ("TS", "ribosome", 3000.0, 0.0, 0.0)])
    assert score_table(solution, submission).iloc[3]["tp"] == 0  # 100 > 75
    row = score_table(solution, submission, distance_multiplier=1.0, beta=1).iloc[3]
    assert (row["tp"], row["fp"], row["fn"], row["fbeta"]) == (1, 1, 1, 0.5)
    assert_matches_reference(solution, submission, distance_multiplier=1.0, beta=1)


# --- randomised agreement with the host ------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_agree_with_host(seed):
    rng = np.random.default_rng(seed)
    solution, submission = random_case(rng, n_experiments=int(rng.integers(1, 5)))
    assert_matches_reference(solution, submission)


lattice = st.tuples(
    st.sampled_from(["TS_a", "TS_b"]),
    st.sampled_from(PARTICLE_NAMES),
    st.integers(0, 12).map(lambda i: i * 6.0),  # steps of 6 A: 3-4-5 triangles hit radii exactly
    st.integers(0, 12).map(lambda i: i * 8.0),
    st.integers(0, 3).map(lambda i: i * 7.5),
)


@settings(max_examples=60, deadline=None)
@given(
    refs=st.lists(lattice, max_size=15),
    cands=st.lists(lattice, max_size=25),
    multiplier=st.sampled_from([0.5, 0.25, 1.0]),
)
def test_lattice_cases_agree_with_host(refs, cands, multiplier):
    solution = frame(refs).drop_duplicates(subset=["experiment", "x", "y", "z"])
    if solution.empty:
        solution = frame([("TS_a", "ribosome", 0.0, 0.0, 0.0)])
    # Bit for bit the host's score and per-type counts, whatever the lattice points (ties on the radius included).
    assert_matches_reference(solution, frame(cands), distance_multiplier=multiplier)
