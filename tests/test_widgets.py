"""ThresholdPanel: its numbers are the metric's, its buttons call the same methods the notebook does."""

from __future__ import annotations

import pytest

from cryokit.demo.fixtures import demo_candidates, demo_solution
from cryokit.metric import score_table
from cryokit.postprocess import apply_thresholds
from cryokit.thresholds import best_thresholds, load_thresholds, nms_candidates
from cryokit.widgets import ThresholdPanel


@pytest.fixture(scope="module")
def data():
    solution = demo_solution(n_runs=2, seed=3, references_per_type=12)
    return solution, demo_candidates(solution, seed=4)


def _assert_table_is_the_metric(panel: ThresholdPanel) -> None:
    kept = apply_thresholds(panel.candidates, panel.thresholds, default=float("inf"))
    expected = score_table(panel.solution, kept).set_index("particle_type")
    table = panel.table().set_index("particle_type")
    for name in table.index:
        for column in ("tp", "fp", "fn", "precision", "recall", "fbeta"):
            assert table.loc[name, column] == expected.loc[name, column], (name, column)
    assert panel.score() == pytest.approx(expected.attrs["score"], abs=1e-15)


def test_panel_starts_at_the_optimum_and_follows_the_sliders(data, tmp_path):
    solution, candidates = data
    panel = ThresholdPanel(candidates, solution, out_path=tmp_path / "t.json")
    assert panel.thresholds == best_thresholds(candidates, solution)
    _assert_table_is_the_metric(panel)
    best = panel.score()
    panel.set_threshold("ribosome", 0.9)
    _assert_table_is_the_metric(panel)
    assert panel.score() < best
    assert panel.optimise()["ribosome"] != 0.9 and panel.score() == best
    with pytest.raises(ValueError, match="no curve for 'membrane'"):
        panel.set_threshold("membrane", 0.5)


def test_nms_slider_re_suppresses_the_candidates(data):
    solution, candidates = data
    panel = ThresholdPanel(candidates, solution)
    panel.set_nms_fraction(0.6)
    assert len(panel.candidates) < len(candidates)
    assert len(panel.candidates) == len(nms_candidates(candidates, 0.6))
    _assert_table_is_the_metric(panel)
    panel.set_nms_fraction(0.0)
    assert len(panel.candidates) == len(candidates)
    with pytest.raises(ValueError, match="radius_fraction must be a number >= 0"):
        nms_candidates(candidates, -1.0)


def test_widget_buttons_call_the_panel(data, tmp_path):
    solution, candidates = data
    panel = ThresholdPanel(candidates, solution, out_path=tmp_path / "thresholds.json")
    panel.widget()
    view = panel._view
    curves_at_the_optimum = bytes(view.plot.value)
    assert curves_at_the_optimum.startswith(b"\x89PNG\r\n\x1a\n")
    view.sliders["apo-ferritin"].value = 0.0  # what dragging the slider does
    assert panel.thresholds["apo-ferritin"] == 0.0
    assert bytes(view.plot.value).startswith(b"\x89PNG") and bytes(view.plot.value) != curves_at_the_optimum  # redrawn
    assert "0.0000" in view.table.value and f"{panel.score():.4f}" in view.table.value
    view.sliders["thyroglobulin"].value = round(panel.thresholds["thyroglobulin"], 3)  # a front end's rounding
    assert panel.thresholds["thyroglobulin"] == best_thresholds(candidates, solution)["thyroglobulin"]
    view.save.click()
    assert load_thresholds(tmp_path / "thresholds.json") == panel.thresholds
    assert "saved" in view.status.value
    view.optimum.click()
    assert panel.thresholds == best_thresholds(candidates, solution)
    assert view.sliders["apo-ferritin"].value == pytest.approx(panel.thresholds["apo-ferritin"])
