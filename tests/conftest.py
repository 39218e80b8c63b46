"""Shared fixtures: tiny datasets written in the exact Kaggle layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryokit.io import write_run_picks, write_tomogram

# The real level-0 scale (z, y, x), COMPETITION.md 2.1.
REAL_SPACING_ZYX = (10.012444196428572, 10.012444196428572, 10.012444537618887)


def make_kaggle_layout(root: Path, runs=("TS_a", "TS_b"), shape_zyx=(20, 36, 40), seed=0,
                       tomo_types=("denoised", "wbp"), split="train") -> dict:
    """Write random tomograms and a few picks per particle; return {run: (volumes, picks)}."""
    rng = np.random.default_rng(seed)
    written = {}
    extent_xyz = np.asarray(shape_zyx[::-1]) * REAL_SPACING_ZYX[0]
    for run in runs:
        volumes = {}
        for tomo_type in tomo_types:
            volume = rng.normal(size=shape_zyx).astype(np.float32)
            path = root / split / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / f"{tomo_type}.zarr"
            write_tomogram(path, volume, REAL_SPACING_ZYX, chunks_zyx=(8, 16, 16))
            volumes[tomo_type] = volume
        picks = {
            "apo-ferritin": rng.uniform(0, extent_xyz, size=(4, 3)),
            "ribosome": rng.uniform(0, extent_xyz, size=(2, 3)),
            "thyroglobulin": rng.uniform(0, extent_xyz, size=(3, 3)),
        }
        if split == "train":
            write_run_picks(root, split, run, picks)
        written[run] = (volumes, picks)
    return written


@pytest.fixture
def kaggle_root(tmp_path: Path):
    """A two-run train split plus a one-run test split; yields (root, what was written)."""
    written = make_kaggle_layout(tmp_path / "data")
    written_test = make_kaggle_layout(tmp_path / "data", runs=("TS_t",), split="test", tomo_types=("denoised",), seed=1)
    return tmp_path / "data", {**written, **written_test}
