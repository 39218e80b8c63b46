"""The exact threshold search against brute force: filter the candidates, re-score with the metric."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryokit.metric import score_table
from cryokit.particles import PARTICLES, particle
from cryokit.thresholds import (
    best_thresholds,
    load_thresholds,
    save_thresholds,
    threshold_curves,
    thresholds_of_curves,
    weighted_score,
)

COLUMNS = ["experiment", "particle_type", "x", "y", "z"]


def _frame(rows, score=False) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS + (["score"] if score else []))


def _random_case(seed: int, n_experiments: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """References of four types; candidates: jittered hits, duplicates near one reference, strays,
    tied scores (rounded to 0.05), a stray experiment absent from the solution."""
    rng = np.random.default_rng(seed)
    sol, cand = [], []
    for e in range(n_experiments):
        for p in PARTICLES[:4]:
            refs = rng.uniform(0, 1500, size=(rng.integers(0, 12), 3))
            sol += [(f"TS_{e}", p.name, *xyz) for xyz in refs]
            for xyz in refs:
                for _ in range(rng.integers(0, 4)):  # 0 to 3 candidates near each reference
                    offset = rng.normal(scale=0.6 * p.match_radius_angstrom, size=3)
                    cand.append((f"TS_{e}", p.name, *(xyz + offset), round(rng.uniform(0, 1) / 0.05) * 0.05))
            strays = rng.uniform(0, 1500, size=(rng.integers(0, 15), 3))
            cand += [(f"TS_{e}", p.name, *xyz, rng.uniform(0, 0.8)) for xyz in strays]
    cand += [("TS_absent", "ribosome", 10.0, 10.0, 10.0, 0.99)]
    return _frame(sol), _frame(cand, score=True)


def _brute_table(solution: pd.DataFrame, candidates: pd.DataFrame, name: str, threshold: float) -> pd.Series:
    kept = candidates[(candidates["particle_type"] == name) & (candidates["score"] >= threshold)]
    table = score_table(solution, kept[COLUMNS])
    return table.set_index("particle_type").loc[name]


def _check_against_brute_force(solution: pd.DataFrame, candidates: pd.DataFrame) -> None:
    curves = threshold_curves(candidates, solution)
    assert list(curves) == [n for n in (p.name for p in PARTICLES) if n in set(solution["particle_type"])]
    for name, curve in curves.items():
        assert np.all(np.diff(curve.thresholds) < 0)
        brute_best = 0.0
        for i, t in enumerate(curve.thresholds):
            row = _brute_table(solution, candidates, name, t)
            assert (curve.tp[i], curve.fp[i], curve.fn[i]) == (row.tp, row.fp, row.fn), (name, t)
            assert curve.fbeta[i] == row.fbeta and curve.precision[i] == row.precision  # bit for bit
            assert curve.recall[i] == row.recall
            brute_best = max(brute_best, row.fbeta)
        threshold, fbeta = curve.best()
        assert fbeta == brute_best
        assert _brute_table(solution, candidates, name, threshold).fbeta == brute_best


@pytest.mark.parametrize("seed", range(4))
def test_curves_match_brute_force_rescoring(seed):
    _check_against_brute_force(*_random_case(seed))


def test_candidates_exactly_on_the_radius_match_as_the_metric_does():
    r = particle("apo-ferritin").match_radius_angstrom  # 30 A: (18, 24, 0) is exactly on it
    assert r == 30.0
    solution = _frame([("TS_0", "apo-ferritin", 100.0, 100.0, 100.0), ("TS_0", "apo-ferritin", 500.0, 500.0, 500.0)])
    candidates = _frame(
        [
            ("TS_0", "apo-ferritin", 118.0, 124.0, 100.0, 0.9),  # on the radius: a match
            ("TS_0", "apo-ferritin", 500.0, float(np.nextafter(530.0, 999)), 500.0, 0.8),  # one ulp outside
            ("TS_0", "apo-ferritin", 500.0, 530.0, 500.0, 0.3),  # on the radius
        ],
        score=True,
    )
    curve = threshold_curves(candidates, solution)["apo-ferritin"]
    assert list(curve.tp) == [1, 1, 2] and list(curve.fp) == [0, 1, 1]
    _check_against_brute_force(solution, candidates)


def test_duplicates_near_one_reference_count_as_false_positives():
    solution = _frame([("TS_0", "ribosome", 0.0, 0.0, 0.0)])
    candidates = _frame(
        [("TS_0", "ribosome", float(d), 0.0, 0.0, s) for d, s in [(1, 0.9), (2, 0.5), (3, 0.5)]], score=True
    )
    curve = threshold_curves(candidates, solution)["ribosome"]
    assert list(curve.thresholds) == [0.9, 0.5] and list(curve.tp) == [1, 1] and list(curve.fp) == [0, 2]
    assert curve.best() == (pytest.approx(0.7), 1.0)
    _check_against_brute_force(solution, candidates)


def test_one_candidate_between_two_references_gives_two_hits_like_the_metric():
    solution = _frame([("TS_0", "ribosome", 0.0, 0.0, 0.0), ("TS_0", "ribosome", 100.0, 0.0, 0.0)])
    candidates = _frame([("TS_0", "ribosome", 50.0, 0.0, 0.0, 0.4)], score=True)
    curve = threshold_curves(candidates, solution)["ribosome"]
    assert (curve.tp[0], curve.fp[0]) == (2, -1)  # the host's quirk, reproduced
    _check_against_brute_force(solution, candidates)


def test_class_without_candidates_and_absent_experiments():
    solution, candidates = _random_case(7)
    solution = pd.concat([solution, _frame([("TS_0", "thyroglobulin", 1.0, 2.0, 3.0)])], ignore_index=True)
    candidates = candidates[candidates["particle_type"] != "thyroglobulin"]
    curves = threshold_curves(candidates, solution)
    empty = curves["thyroglobulin"]
    assert len(empty.thresholds) == 0 and empty.best() == (1.0, 0.0)
    assert empty.at(0.0) == (0, 0, 1, 0.0, 0.0, 0.0)
    without_absent = threshold_curves(candidates[candidates["experiment"] != "TS_absent"], solution)
    np.testing.assert_array_equal(curves["ribosome"].fp, without_absent["ribosome"].fp)
    _check_against_brute_force(solution, candidates)


def test_at_and_weighted_score_match_the_metric_at_any_threshold():
    solution, candidates = _random_case(3)
    curves = threshold_curves(candidates, solution)
    rng = np.random.default_rng(0)
    for _ in range(5):
        thresholds = {name: float(rng.choice([-1.0, 2.0, rng.uniform(0, 1), 0.5])) for name in curves}
        kept = candidates[candidates["score"] >= candidates["particle_type"].map(thresholds).fillna(0.0)]
        table = score_table(solution, kept[COLUMNS]).set_index("particle_type")
        for name, curve in curves.items():
            assert curve.at(thresholds[name]) == tuple(
                table.loc[name, ["tp", "fp", "fn", "precision", "recall", "fbeta"]]
            )
        assert weighted_score(curves, thresholds) == pytest.approx(table.attrs["score"], abs=1e-15)


def test_best_threshold_with_negative_scores_and_adjacent_floats():
    solution = _frame([("TS_0", "ribosome", 0.0, 0.0, 0.0)])
    negative = _frame([("TS_0", "ribosome", 0.0, 0.0, 0.0, -2.0)], score=True)
    assert best_thresholds(negative, solution) == {"ribosome": -2.0}
    low = 0.25
    high = float(np.nextafter(low, 1.0))
    adjacent = _frame(
        [("TS_0", "ribosome", 0.0, 0.0, 0.0, high), ("TS_0", "ribosome", 900.0, 0.0, 0.0, low)], score=True
    )
    assert best_thresholds(adjacent, solution)["ribosome"] == high  # the midpoint would round onto `low`
    above_one = _frame([("TS_0", "ribosome", 900.0, 0.0, 0.0, 3.0)], score=True)
    assert best_thresholds(above_one, solution)["ribosome"] > 3.0  # no hit: keep nothing


def test_scaled_thresholds_lower_each_optimum_and_keep_at_least_its_true_positives():
    solution, candidates = _random_case(3)
    curves = threshold_curves(candidates, solution)
    optimum, scaled = thresholds_of_curves(curves), thresholds_of_curves(curves, 0.8)
    assert optimum == best_thresholds(candidates, solution)
    assert scaled == best_thresholds(candidates, solution, scale=0.8)
    for name, curve in curves.items():
        if curve.best()[1] > 0:
            assert scaled[name] == pytest.approx(0.8 * optimum[name])
            assert curve.at(scaled[name])[0] >= curve.at(optimum[name])[0]  # never fewer true positives
    # A class whose optimum keeps nothing, and a non-positive threshold, are left as they are.
    only = _frame([("TS_0", "ribosome", 0.0, 0.0, 0.0)])
    miss = _frame([("TS_0", "ribosome", 900.0, 0.0, 0.0, 3.0)], score=True)
    assert (
        best_thresholds(miss, only, scale=0.5) == best_thresholds(miss, only)
        and best_thresholds(miss, only)["ribosome"] > 3.0
    )
    negative = _frame([("TS_0", "ribosome", 0.0, 0.0, 0.0, -2.0)], score=True)
    assert best_thresholds(negative, only, scale=0.5) == {"ribosome": -2.0}
    for bad in (0.0, 1.5, -0.8):
        with pytest.raises(ValueError, match="threshold scale must be in"):
            thresholds_of_curves(curves, bad)


def test_the_configured_threshold_scale_is_the_library_s():
    from cryokit.config import PostprocessConfig
    from cryokit.thresholds import THRESHOLD_SCALE

    assert PostprocessConfig().threshold_scale == THRESHOLD_SCALE == 0.8


def test_bad_candidates_are_refused():
    solution, candidates = _random_case(0)
    with pytest.raises(ValueError, match="missing column.*score"):
        threshold_curves(candidates.drop(columns="score"), solution)
    with pytest.raises(ValueError, match="non-finite score"):
        threshold_curves(candidates.assign(score=np.nan), solution)
    with pytest.raises(ValueError, match="unknown particle type"):
        threshold_curves(candidates.assign(particle_type="ribosomes"), solution)


def test_save_and_load_round_trip(tmp_path):
    path = save_thresholds(tmp_path / "t.json", {"ribosome": 0.25, "apo-ferritin": np.float32(0.5)})
    assert load_thresholds(path) == {"ribosome": 0.25, "apo-ferritin": 0.5}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[0.1, 0.2]", "must hold an object"),
        (json.dumps({"ribosomes": 0.1}), "unknown particle type 'ribosomes'"),
        (json.dumps({"ribosome": "0.1"}), "ribosome threshold must be a finite number"),
        (json.dumps({"ribosome": True}), "ribosome threshold must be a finite number"),
        ('{"ribosome": NaN}', "ribosome threshold must be a finite number"),
    ],
)
def test_load_thresholds_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_thresholds(path)
    assert str(path) in str(error.value)


def test_missing_file_and_bad_values_to_save(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_thresholds(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="unknown particle type"):
        save_thresholds(tmp_path / "t.json", {"ribosomes": 0.1})
    with pytest.raises(ValueError, match="finite number"):
        save_thresholds(tmp_path / "t.json", {"ribosome": float("nan")})
    assert not (tmp_path / "t.json").exists()
