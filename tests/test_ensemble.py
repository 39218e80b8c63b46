"""Ensembles of different kinds: monotone per-class calibration, a model with itself is the model, peers vote on
scaled scores, weak members do not hurt, and the ensemble file is data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryokit.ensemble import (
    DEFAULT_PEER_MARGIN,
    candidate_hits,
    ensemble_picks,
    fit_calibration,
    fit_ensemble,
    idle_members,
    load_ensemble,
    save_ensemble,
    without_members,
)
from cryokit.metric import score_table
from cryokit.postprocess import apply_thresholds, merge_picks
from cryokit.thresholds import THRESHOLD_SCALE, best_thresholds, threshold_curves

CLASSES = ("apo-ferritin", "ribosome", "thyroglobulin")


def _solution(seed: int, runs=("TS_a", "TS_b"), per_class=30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for run in runs:
        for name in CLASSES:
            # On a grid 400 A apart (more than any merge radius), jittered: references never crowd.
            cells = rng.choice(20**3, size=per_class, replace=False)
            xyz = (
                np.stack(np.unravel_index(cells, (20, 20, 20)), axis=1) * 400.0
                + 200
                + rng.uniform(-20, 20, (per_class, 3))
            )
            rows += [(run, name, *p) for p in xyz]
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])


def _member(solution: pd.DataFrame, seed: int, skill: dict[str, float], scale: float = 1.0) -> pd.DataFrame:
    """Scored candidates: a hit near each reference found (score higher with skill) and strays."""
    rng = np.random.default_rng(seed)
    rows = []
    for row in solution.itertuples():
        s = skill.get(row.particle_type, 0.0)
        if rng.random() < 0.9:
            rows.append(
                (row.experiment, row.particle_type, row.x + 5, row.y - 5, row.z, scale * rng.beta(1 + 4 * s, 2))
            )
    for run in solution["experiment"].unique():
        for name in CLASSES:
            s = skill.get(name, 0.0)
            for xyz in rng.uniform(0, 8000, size=(60, 3)):
                rows.append((run, name, *xyz, scale * rng.beta(1, 2 + 4 * s)))
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z", "score"])


def _f4(picks, solution, thresholds):
    return score_table(solution, apply_thresholds(picks, thresholds, 1e9)).attrs["score"]


def test_calibration_is_monotone_per_class_and_estimates_the_hit_rate():
    solution = _solution(0)
    candidates = _member(solution, 1, {"apo-ferritin": 0.9, "ribosome": 0.3, "thyroglobulin": 0.6}, scale=3.0)
    calibration = fit_calibration(candidates, solution)
    assert set(calibration.knots) == set(CLASSES)
    calibrated = calibration(candidates)
    hits = candidate_hits(candidates, solution)
    for name in CLASSES:
        rows = (candidates["particle_type"] == name).to_numpy()
        raw, new = candidates["score"].to_numpy()[rows], calibrated["score"].to_numpy()[rows]
        order = np.argsort(raw)
        assert np.all(np.diff(new[order]) > 0) or np.all(np.diff(raw[order]) == 0)  # strictly increasing
        assert new.min() >= 0 and new.max() <= 1 + 1e-5  # a probability (raw scores were up to 3)
        # The mean calibrated score is the share of hits (isotonic regression keeps the mean).
        assert new.mean() == pytest.approx(hits[rows].mean(), abs=1e-4)
    # Thresholded picks do not change: calibration reorders nothing.
    raw_best, new_best = best_thresholds(candidates, solution), best_thresholds(calibrated, solution)
    assert _f4(candidates, solution, raw_best) == pytest.approx(_f4(calibrated, solution, new_best), abs=1e-12)


def test_hits_are_one_per_found_reference_and_match_the_metric():
    solution = _solution(2, runs=("TS_a",), per_class=10)
    candidates = _member(solution, 3, {n: 0.5 for n in CLASSES})
    hits = candidate_hits(candidates, solution)
    table = score_table(solution, candidates)  # every candidate kept: tp counts references found
    assert hits.sum() == table["tp"].sum()


def test_an_ensemble_of_a_model_with_itself_is_the_model(tmp_path):
    val, test = _solution(4), _solution(5)
    skill = {"apo-ferritin": 0.8, "ribosome": 0.4, "thyroglobulin": 0.6}
    member_val, member_test = _member(val, 6, skill), _member(test, 7, skill)
    ensemble = fit_ensemble([member_val, member_val], val, members=["a.pt", "a.pt"])
    alone = _f4(member_test, test, best_thresholds(member_val, val, scale=THRESHOLD_SCALE))
    merged = ensemble_picks(ensemble, [member_test, member_test])
    assert _f4(merged, test, ensemble.thresholds) == pytest.approx(alone, abs=1e-12)
    kept = apply_thresholds(merged, ensemble.thresholds, 1e9).sort_values(["x", "y", "z"])
    expected = apply_thresholds(member_test, best_thresholds(member_val, val, scale=THRESHOLD_SCALE), 1e9).sort_values(
        ["x", "y", "z"]
    )
    np.testing.assert_allclose(kept[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(), atol=1e-9)
    # Its thresholds are the validation optimum's times the threshold scale (members alone get the same).
    optimum = fit_ensemble([member_val, member_val], val, members=["a.pt", "a.pt"], threshold_scale=1.0)
    assert ensemble.thresholds == pytest.approx({k: THRESHOLD_SCALE * t for k, t in optimum.thresholds.items()})
    # The file is JSON data and comes back equal.
    path = save_ensemble(tmp_path / "ensemble.json", ensemble)
    again = load_ensemble(path)
    assert again.weights == ensemble.weights and again.thresholds == pytest.approx(ensemble.thresholds)
    assert _f4(ensemble_picks(again, [member_test, member_test]), test, again.thresholds) == pytest.approx(alone)


def test_two_different_members_beat_each_and_a_weak_member_does_not_hurt():
    val, test = _solution(8), _solution(9)
    # Two members of different scales, each better on other classes: together better than either.
    skill_a = {"apo-ferritin": 0.9, "ribosome": 0.2, "thyroglobulin": 0.5}
    skill_b = {"apo-ferritin": 0.2, "ribosome": 0.9, "thyroglobulin": 0.5}
    a_val, a_test = _member(val, 10, skill_a), _member(test, 11, skill_a)
    b_val, b_test = _member(val, 12, skill_b, scale=0.1), _member(test, 13, skill_b, scale=0.1)
    ensemble = fit_ensemble([a_val, b_val], val)
    assert set(ensemble.weights.values()) == {(0.5, 0.5)}  # peers: they vote on every class
    score = _f4(ensemble_picks(ensemble, [a_test, b_test]), test, ensemble.thresholds)
    a = _f4(a_test, test, best_thresholds(a_val, val, scale=THRESHOLD_SCALE))
    b = _f4(b_test, test, best_thresholds(b_val, val, scale=THRESHOLD_SCALE))
    assert score > max(a, b) + 0.01  # of at most 4/7 with these three classes
    # A member that finds most references but scores at random is within the peer margin on validation; it
    # would lower the vote there, so it gets no vote and changes nothing held out.
    noise_val, noise_test = _member(val, 14, {}), _member(test, 15, {})
    noise_val["score"] = np.random.default_rng(16).random(len(noise_val))
    noise_test["score"] = np.random.default_rng(17).random(len(noise_test))
    with_noise = fit_ensemble([a_val, b_val, noise_val], val)
    totals = {m: sum(with_noise.val_fbeta[n][m] for n in CLASSES) / len(CLASSES) for m in with_noise.members}
    assert max(totals.values()) - totals["member 2"] <= DEFAULT_PEER_MARGIN  # a peer by its F4 ...
    assert set(with_noise.weights.values()) == {(0.5, 0.5, 0.0)}  # ... left out of the vote
    forced = fit_ensemble([a_val, b_val, noise_val], val, peer_margin=1.0)
    assert forced.weights == with_noise.weights  # not by the margin: by what it does to the vote
    noisy = ensemble_picks(with_noise, [a_test, b_test, noise_test])
    assert _f4(noisy, test, with_noise.thresholds) == pytest.approx(score, abs=1e-12)
    # A member that misses most references is outside the margin: no vote either, and nothing changes.
    keep = np.random.default_rng(18)
    weak_val, weak_test = (m[keep.random(len(m)) < 0.3] for m in (_member(val, 19, {}), _member(test, 20, {})))
    with_weak = fit_ensemble([a_val, b_val, weak_val], val)
    totals = {m: sum(with_weak.val_fbeta[n][m] for n in CLASSES) / len(CLASSES) for m in with_weak.members}
    assert max(totals.values()) - totals["member 2"] > DEFAULT_PEER_MARGIN
    assert set(with_weak.weights.values()) == {(0.5, 0.5, 0.0)}
    weak = ensemble_picks(with_weak, [a_test, b_test, weak_test])
    assert _f4(weak, test, with_weak.thresholds) == pytest.approx(score, abs=1e-12)
    # Outside the vote on every class, it need not be predicted at all: dropped, the merge is the same.
    assert idle_members(with_weak) == (2,) and idle_members(ensemble) == ()
    lean = without_members(with_weak, [2])
    assert lean.members == ("member 0", "member 1") and lean.tta == ("none", "none")
    pd.testing.assert_frame_equal(ensemble_picks(lean, [a_test, b_test]), weak)
    with pytest.raises(ValueError, match=r"members \[0\] \(member 0\) carry weight"):
        without_members(with_weak, [0, 2])


def test_a_class_leaves_the_lead_member_only_for_a_validation_gain_above_the_margin():
    val, test = _solution(18), _solution(19)
    # The lead (better overall) and a weaker member that is better on thyroglobulin alone.
    lead_val = _member(val, 20, {"apo-ferritin": 0.9, "ribosome": 0.9, "thyroglobulin": 0.3})
    weak_val = _member(val, 21, {"apo-ferritin": 0.1, "ribosome": 0.1, "thyroglobulin": 0.9}, scale=0.2)
    # The choice per class without a vote (the vote has its own test below).
    free = fit_ensemble([lead_val, weak_val], val, members=["lead", "weak"], min_gain_references=0.0, vote=False)
    gain = free.val_fbeta["thyroglobulin"]["ensemble"] - free.val_fbeta["thyroglobulin"]["lead"]
    assert gain > 0.05 and free.weights["thyroglobulin"] != (1.0, 0.0)  # it takes thyroglobulin over
    for name in ("apo-ferritin", "ribosome"):  # where it is worse it is left out
        assert free.weights[name] == (1.0, 0.0) or free.val_fbeta[name]["ensemble"] > free.val_fbeta[name]["lead"]
    # Asked for more than that gain (in references of the class: F4 of one found is 1 / n), the class stays
    # with the lead; asked for a little less, it moves.
    n_thyroglobulin = int((val["particle_type"] == "thyroglobulin").sum())
    strict = fit_ensemble(
        [lead_val, weak_val],
        val,
        members=["lead", "weak"],
        min_gain_references=(gain + 1e-6) * n_thyroglobulin,
        vote=False,
    )
    assert strict.weights["thyroglobulin"] == (1.0, 0.0)
    assert strict.val_fbeta["thyroglobulin"]["ensemble"] == pytest.approx(strict.val_fbeta["thyroglobulin"]["lead"])
    loose = fit_ensemble(
        [lead_val, weak_val],
        val,
        members=["lead", "weak"],
        min_gain_references=(gain - 1e-6) * n_thyroglobulin,
        vote=False,
    )
    assert loose.weights["thyroglobulin"] == free.weights["thyroglobulin"]
    # A min_gain no class reaches gives the lead member's picks, held out as on validation (at the validation
    # optimum: a threshold scale lowers the calibrated thresholds, not the member's raw ones).
    lead_test = _member(test, 22, {"apo-ferritin": 0.9, "ribosome": 0.9, "thyroglobulin": 0.3})
    weak_test = _member(test, 23, {"apo-ferritin": 0.1, "ribosome": 0.1, "thyroglobulin": 0.9}, scale=0.2)
    only_lead = fit_ensemble([lead_val, weak_val], val, min_gain_references=1e6, vote=False, threshold_scale=1.0)
    assert all(w == (1.0, 0.0) for w in only_lead.weights.values())
    merged = _f4(ensemble_picks(only_lead, [lead_test, weak_test]), test, only_lead.thresholds)
    assert merged == pytest.approx(_f4(lead_test, test, best_thresholds(lead_val, val)), abs=1e-12)
    with pytest.raises(ValueError, match="min_gain_references must be >= 0"):
        fit_ensemble([lead_val, weak_val], val, min_gain_references=-0.1)


def test_peers_vote_on_scores_scaled_by_their_own_thresholds_and_nothing_is_tuned_on_the_merge():
    val, test = _solution(24), _solution(25)
    # Two members of equal skill on scales 10x apart: each one's scores divided by its own tuned threshold.
    skill = {"apo-ferritin": 0.6, "ribosome": 0.6, "thyroglobulin": 0.6}
    a_val, a_test = _member(val, 26, skill), _member(test, 27, skill)
    b_val, b_test = _member(val, 28, skill, scale=0.1), _member(test, 29, skill, scale=0.1)
    ensemble = fit_ensemble([a_val, b_val], val, members=["a", "b"])
    assert set(ensemble.weights.values()) == {(0.5, 0.5)}
    for member, candidates in zip(ensemble.calibrations, (a_val, b_val)):
        thresholds = best_thresholds(candidates, val)
        for name in CLASSES:  # the scale of a class is the line through (0, 0) and (t, 1)
            xs, ys = member.knots[name]
            assert xs == (0.0, 1.0) and ys[1] == pytest.approx(1.0 / thresholds[name])
    # Kept from 1 on that scale (each member's own threshold) times the threshold scale: tuned on nothing else.
    assert ensemble.thresholds == {n: THRESHOLD_SCALE for n in CLASSES}
    at_optimum = fit_ensemble([a_val, b_val], val, members=["a", "b"], threshold_scale=1.0)
    assert at_optimum.thresholds == {n: 1.0 for n in CLASSES}
    # A pick's score is the mean of the two members' scaled scores (0 for a member that missed it).
    merged = ensemble_picks(ensemble, [a_test, b_test])
    scaled = [cal(t) for cal, t in zip(ensemble.calibrations, (a_test, b_test))]
    expected = merge_picks(scaled, 0.5, [0.5, 0.5])
    pd.testing.assert_frame_equal(
        merged.sort_values(["particle_type", "x", "y", "z"], ignore_index=True),
        expected.sort_values(["particle_type", "x", "y", "z"], ignore_index=True),
    )
    # Its validation record is the vote at its thresholds of 1, not its best over thresholds.
    curves = threshold_curves(ensemble_picks(ensemble, [a_val, b_val]), val)
    for name in CLASSES:
        assert ensemble.val_fbeta[name]["ensemble"] == pytest.approx(curves[name].at(1.0)[5])
    # Held out it does at least as well as either member alone.
    score = _f4(merged, test, ensemble.thresholds)
    assert score >= max(
        _f4(a_test, test, best_thresholds(a_val, val, scale=THRESHOLD_SCALE)),
        _f4(b_test, test, best_thresholds(b_val, val, scale=THRESHOLD_SCALE)),
    )
    # A peer that finds none of a class on validation has no vote on it: the other keeps it alone.
    blind_val, blind_test = (b[b["particle_type"] != "thyroglobulin"] for b in (b_val, b_test))
    blind = fit_ensemble([a_val, blind_val], val, members=["a", "blind"], peer_margin=1.0)
    assert blind.weights["thyroglobulin"] == (1.0, 0.0) and blind.weights["ribosome"] == (0.5, 0.5)
    kept = apply_thresholds(ensemble_picks(blind, [a_test, blind_test]), blind.thresholds, 1e9)
    a_alone = apply_thresholds(a_test, best_thresholds(a_val, val, scale=THRESHOLD_SCALE), 1e9)
    assert (kept["particle_type"] == "thyroglobulin").sum() == (a_alone["particle_type"] == "thyroglobulin").sum()
    # No peer within a margin of 0 (b scores a little under a), or no vote: the choice per class.
    totals = {m: sum(ensemble.val_fbeta[n][m] for n in CLASSES) for m in ("a", "b")}
    assert totals["a"] != totals["b"]
    for alone in (
        fit_ensemble([a_val, b_val], val, members=["a", "b"], peer_margin=0.0, min_gain_references=1e6),
        fit_ensemble([a_val, b_val], val, members=["a", "b"], vote=False, min_gain_references=1e6),
    ):
        lead = (1.0, 0.0) if totals["a"] > totals["b"] else (0.0, 1.0)
        assert set(alone.weights.values()) == {lead}
    with pytest.raises(ValueError, match="peer_margin must be >= 0"):
        fit_ensemble([a_val, b_val], val, peer_margin=-0.1)


def test_a_bad_ensemble_file_is_named(tmp_path):
    (tmp_path / "e.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="e.json is not a cryokit ensemble file"):
        load_ensemble(tmp_path / "e.json")
    (tmp_path / "f.json").write_text("{not json")
    with pytest.raises(ValueError, match="f.json cannot be read as JSON"):
        load_ensemble(tmp_path / "f.json")
    with pytest.raises(FileNotFoundError, match="g.json does not exist"):
        load_ensemble(tmp_path / "g.json")


def test_an_ensemble_on_a_project_catalog_matches_with_its_radii_and_keeps_it_in_its_file(tmp_path):
    from cryokit.particles import ParticleCatalog

    catalog = ParticleCatalog.from_records(
        [
            {"name": "small-blob", "radius_angstrom": 100.0, "weight": 1.0, "label": 1},
            {"name": "large-blob", "radius_angstrom": 300.0, "weight": 2.0, "label": 2},
        ],
        "a copick project",
    )
    rows = [("TS_a", name, 1000.0 * i, 500.0, 500.0) for i in range(1, 9) for name in catalog.names]
    solution = pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])
    # Every candidate lies 120 A from its reference: inside half the large blob's radius (150 A), outside
    # half the small one's (50 A).
    candidates = solution.assign(x=solution["x"] + 120.0, score=np.linspace(0.2, 0.9, len(solution)))
    hits = candidate_hits(candidates, solution, catalog=catalog)
    assert hits[(candidates["particle_type"] == "large-blob").to_numpy()].all()
    assert not hits[(candidates["particle_type"] == "small-blob").to_numpy()].any()
    with pytest.raises(ValueError, match="small-blob"):  # the competition's six do not name these objects
        fit_ensemble([candidates], solution)
    ensemble = fit_ensemble([candidates], solution, ["model"], catalog=catalog)
    assert ensemble.val_fbeta["large-blob"]["ensemble"] == pytest.approx(1.0)
    assert ensemble.val_fbeta["small-blob"]["ensemble"] == 0.0
    loaded = load_ensemble(save_ensemble(tmp_path / "ensemble.json", ensemble))
    assert loaded.catalog == catalog and loaded.thresholds == ensemble.thresholds
    pd.testing.assert_frame_equal(ensemble_picks(loaded, [candidates]), ensemble_picks(ensemble, [candidates]))


def test_an_ensemble_records_each_members_tta_and_older_or_bad_files_are_handled(tmp_path):
    import json

    solution = _solution(0)
    a = _member(solution, 1, {n: 0.8 for n in solution["particle_type"].unique()})
    b = _member(solution, 2, {n: 0.6 for n in solution["particle_type"].unique()})
    a.attrs["tta"] = "flips"  # what group_candidates records
    ensemble = fit_ensemble([a, b], solution, ["unet", "detector"])
    assert ensemble.tta == ("flips", "none")  # b has no record: predicted without
    path = save_ensemble(tmp_path / "ensemble.json", ensemble)
    assert load_ensemble(path).tta == ("flips", "none")
    data = json.loads(path.read_text())
    del data["tta"]  # a file of version 2
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert load_ensemble(tmp_path / "old.json").tta == ("none", "none")
    for bad, message in ((["flips"], "1 TTA choices"), (["flips", "mirror"], "got 'mirror'"), (3, "got 3")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, "tta": bad}))
        with pytest.raises(ValueError, match=f"bad.json.*{message}"):
            load_ensemble(tmp_path / "bad.json")
