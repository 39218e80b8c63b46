"""Score plots show the numbers they are given."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd

from cryokit.metric import score_table
from cryokit.particles import SCORED_PARTICLE_NAMES
from cryokit.plots.training import plot_score_heatmap


def _table(hit_share: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [("TS_a", name, *rng.uniform(0, 5000, 3)) for name in SCORED_PARTICLE_NAMES for _ in range(10)]
    solution = pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])
    return score_table(solution, solution.iloc[: int(hit_share * len(solution))])


def test_score_heatmap_annotates_every_class_and_the_weighted_score(tmp_path):
    tables = {"half": _table(0.5), "all": _table(1.0)}
    figure = plot_score_heatmap(tables, tmp_path / "table.png", title="t")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert len(texts) == 2 * (len(SCORED_PARTICLE_NAMES) + 1)
    expected = [
        f"{v:.3f}"
        for m in tables.values()
        for v in [*m.set_index("particle_type")["fbeta"][list(SCORED_PARTICLE_NAMES)], m.attrs["score"]]
    ]
    assert texts == expected and texts[-1] == "1.000"
    rows = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert rows == ["half", "all"]
    image = matplotlib.image.imread(tmp_path / "table.png")
    assert image.shape[1] > 600 and np.std(image[..., :3]) > 0.05
