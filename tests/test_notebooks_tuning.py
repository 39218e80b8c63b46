"""The tuning and threshold notebooks run headless (papermill) and write what they promise."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

from cryokit.thresholds import load_thresholds

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["tune", "thresholds"])
def test_paired_notebooks_are_in_sync(name):
    """The .ipynb holds the same cells as the reviewed py:percent script."""
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    assert [c.source for c in script.cells] == [c.source for c in notebook.cells]
    assert "parameters" in next(c for c in notebook.cells if c.cell_type == "code").metadata.get("tags", [])


def _execute(name: str, tmp_path: Path, **parameters) -> None:
    import papermill

    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(tmp_path / f"{name}.out.ipynb"),
        parameters=parameters,
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=600,
    )


def test_tune_notebook_runs_a_tiny_study_and_saves_its_figures(tmp_path):
    out = tmp_path / "tune"
    _execute("tune", tmp_path, trials=3, study_name="ci", out_dir=str(out), budget=300, tracking=False)
    for figure in ("optuna_history.png", "optuna_importances.png", "optuna_parallel.png"):
        assert (out / figure).stat().st_size > 10_000, figure
    assert (out / "best_config.yaml").is_file() and (out / "optuna.db").is_file()
    assert json.loads((out / "best_trial.json").read_text())["complete"] >= 2


def test_thresholds_notebook_writes_the_optimum(tmp_path):
    out = tmp_path / "thresholds"
    _execute("thresholds", tmp_path, out_dir=str(out))
    thresholds = load_thresholds(out / "thresholds.json")
    assert set(thresholds) == {
        "apo-ferritin",
        "beta-amylase",
        "beta-galactosidase",
        "ribosome",
        "thyroglobulin",
        "virus-like-particle",
    }
    assert all(0 < value < 1 for value in thresholds.values())
