"""Shared fixtures: tiny datasets written in the exact Kaggle layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryokit.io import write_run_picks, write_tomogram

# The real level-0 scale (z, y, x), COMPETITION.md 2.1.
REAL_SPACING_ZYX = (10.012444196428572, 10.012444196428572, 10.012444537618887)


def make_kaggle_layout(
    root: Path, runs=("TS_a", "TS_b"), shape_zyx=(20, 36, 40), seed=0, tomo_types=("denoised", "wbp"), split="train"
) -> dict:
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


def make_blob_layout(
    root: Path, runs=("TS_a", "TS_b"), shape_zyx=(24, 64, 64), spacing=20.0, seed=0, per_class=6
) -> dict:
    """A learnable toy layout: bright balls (apo-ferritin) and dark balls (ribosome) in mild noise.

    Big enough for a tiny U-Net to learn in a few dozen steps, small enough for CI.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij"), axis=-1)
    written = {}
    for run in runs:
        volume = rng.normal(scale=0.3, size=shape_zyx).astype(np.float32)
        picks = {}
        for name, radius_voxels, value in (("apo-ferritin", 3.0, 2.0), ("ribosome", 5.0, -2.0)):
            centres_zyx = rng.uniform([6, 8, 8], np.asarray(shape_zyx) - [6, 8, 8], size=(per_class, 3))
            for centre in centres_zyx:
                inside = np.linalg.norm(grid - centre, axis=-1) <= radius_voxels
                volume[inside] = value + rng.normal(scale=0.3, size=int(inside.sum()))
            picks[name] = centres_zyx[:, ::-1] * spacing  # voxel z, y, x -> Angstrom x, y, z
        path = root / "train" / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"
        write_tomogram(path, volume, spacing, chunks_zyx=(16, 32, 32))
        write_run_picks(root, "train", run, picks)
        written[run] = (volume, picks)
    return written


BLOB_RUNS = ("TS_a", "TS_b", "TS_c")
# What a tiny U-Net needs to learn the blob layout in a few epochs (``cryokit.demo.fixtures.tiny_config`` + these).
BLOB_TRAINING = {
    "model.channels": [8, 16],
    "model.num_res_units": 0,
    "patch.patches_per_epoch": 16,
    "patch.inference_batch_size": 4,
    "patch.inference_overlap": 0.25,
    "augment.rotate_degrees": 0,
    "augment.scale_fraction": 0,
    "augment.elastic_p": 0,
    "augment.noise_p": 0,
    "augment.intensity_p": 0,
    "loss.particle_weight": 4.0,
    "train.lr": 0.01,
}


def blob_config(root, out_dir, epochs=2, **train):
    """``tiny_config`` on ``make_blob_layout``'s runs (TS_c validates), plus ``train.*`` keyword overrides."""
    from cryokit.demo.fixtures import tiny_config

    return tiny_config(
        root, BLOB_RUNS, out_dir, epochs, overrides={**BLOB_TRAINING, **{f"train.{k}": v for k, v in train.items()}}
    )
