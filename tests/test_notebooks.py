"""Notebooks run headless with papermill (jupytext source -> ipynb in a temporary folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import nbformat
import numpy as np

from cryokit.training.checkpoint import load_model

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(source: Path, work: Path, parameters: dict) -> Path:
    """Convert ``source`` (py:percent) to ipynb and run it with papermill (kernel python3); return the output."""
    notebook = work / f"{source.stem}.ipynb"
    subprocess.run(
        [sys.executable, "-m", "jupytext", "--to", "ipynb", str(source), "-o", str(notebook)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import papermill

    executed = work / f"{source.stem}.executed.ipynb"
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(work),
        progress_bar=False,
        execution_timeout=600,
    )
    return executed


def test_eda_notebook(tmp_path):
    out_dir = tmp_path / "eda"
    executed = _execute(
        NOTEBOOKS / "eda.py",
        tmp_path,
        {
            "out_dir": str(out_dir),
            "sim_runs": 2,
            "sim_shape_zyx": [64, 160, 160],
            "sim_difficulty": "easy",
        },
    )
    assert executed.is_file()
    expected = [
        "particle_counts",
        "intensity_histograms",
        "orthogonal_slices",
        "mean_subtomograms",
        "nearest_neighbour_distances",
        "depth_distribution",
    ]
    for name in expected:
        image = matplotlib.image.imread(out_dir / f"{name}.png")
        assert image.shape[0] > 200 and image.shape[1] > 300, name
        assert np.std(image[..., :3]) > 0.02, name  # not a blank canvas
    # The notebook's numbers are those of the data it simulated: the summary line and the counts table.
    from cryokit.io import list_runs, read_picks
    from cryokit.plots import particle_counts_table

    runs = list_runs(out_dir / "data", "train")
    picks = read_picks(out_dir / "data", "train", runs)
    notebook = nbformat.read(executed, as_version=4)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(o.get("text", "") for o in outputs)
    assert f"{len(runs)} runs from {out_dir / 'data'}/train: {', '.join(runs)}; {len(picks)} picks" in text
    tables = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    counts = particle_counts_table(picks)
    assert any(str(int(counts.loc["total", "total"])) in table and "apo-ferritin" in table for table in tables)


def test_train_unet_notebook_learns(tmp_path):
    import json

    from conftest import make_blob_layout

    make_blob_layout(tmp_path / "data", runs=("TS_a", "TS_b", "TS_c"))
    out_dir = tmp_path / "train"
    _execute(
        NOTEBOOKS / "train_unet.py",
        tmp_path,
        {
            "data_root": str(tmp_path / "data"),
            "val_runs": ["TS_c"],
            "out_dir": str(out_dir),
            "level": 0,
            "channels": [8, 16, 32],  # the preset's DynUNet needs 3 levels
            "patch_size_zyx": [16, 32, 32],
            "epochs": 4,
            "patches_per_epoch": 16,
            "batch_size": 2,
            "lr": 0.01,
            "track": False,
        },
    )
    report = json.loads((out_dir / "report.json").read_text())
    assert report["best_score"] > report["untrained_score"] + 0.05, report
    for name in ("curves.png", "predictions_TS_c.png"):
        image = matplotlib.image.imread(out_dir / name)
        assert image.shape[0] > 300 and np.std(image[..., :3]) > 0.02, name


def test_train_yolo3d_notebook_learns(tmp_path):
    import json

    from conftest import make_blob_layout

    make_blob_layout(tmp_path / "data", runs=("TS_a", "TS_b", "TS_c"))
    out_dir = tmp_path / "yolo"
    _execute(
        NOTEBOOKS / "train_yolo3d.py",
        tmp_path,
        {
            "data_root": str(tmp_path / "data"),
            "val_runs": ["TS_c"],
            "out_dir": str(out_dir),
            "level": 0,
            "neck_channels": 32,
            "backbone_width": 16,
            "patch_size_zyx": [16, 32, 32],
            "epochs": 3,
            "patches_per_epoch": 16,
            "batch_size": 2,
            "lr": 0.002,
            "appearance": False,  # three epochs on bright blobs: learning shows without them
            "track": False,
        },
    )
    report = json.loads((out_dir / "report.json").read_text())
    history = json.loads((out_dir / "history.json").read_text())
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    assert report["best_score"] > report["untrained_score"] + 0.05, report
    assert load_model(out_dir / "best.pt").model.backbone.width == 16  # the notebook's parameter reached the model
