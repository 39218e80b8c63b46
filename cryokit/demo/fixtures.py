"""Tiny data and configs that run in seconds on a CPU: the notebooks' defaults, CI and tests.

``tiny_dataset`` writes a few small runs in the Kaggle layout with ``cryokit.synth`` (real particle
shapes, so a tiny model learns something). ``tiny_config`` is a base config that trains for one or two
epochs in seconds, and ``TINY_SPACE`` narrows the search space to sizes that fit it. ``demo_candidates`` makes scored
candidate picks around a solution (hits, duplicates and strays), for the threshold notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from cryokit.config import RunConfig, apply_overrides
from cryokit.coords import voxel_zyx_to_angstrom_xyz
from cryokit.particles import PARTICLE_NAMES, PARTICLES

__all__ = ["TINY_SHAPE_ZYX", "TINY_SPACE", "tiny_dataset", "tiny_config", "demo_solution", "demo_candidates"]

TINY_SHAPE_ZYX = (64, 96, 96)  # the smallest volume the largest particles fit in
# The search space narrowed to models and patches that train in seconds (every key is still searched).
TINY_SPACE: dict[str, Any] = {
    "model.channels": {"choices": [[4, 8], [4, 8, 16], [8, 16]]},
    "model.num_res_units": {"low": 0, "high": 1, "int": True},
    "patch.size_zyx": {"choices": [[16, 32, 32], [32, 32, 32]]},
}
_TINY_COUNTS = {
    "apo-ferritin": 6,
    "beta-amylase": 2,
    "beta-galactosidase": 3,
    "ribosome": 2,
    "thyroglobulin": 2,
    "virus-like-particle": 1,
}


def tiny_dataset(root: str | Path, n_runs: int = 3, seed: int = 0) -> list[str]:
    """Write ``n_runs`` small train runs (64 x 96 x 96 voxels, ``denoised`` only) under ``root``.

    Returns:
        The run names.
    """
    from cryokit.synth import SimulationConfig, simulate_dataset

    config = SimulationConfig(
        shape_zyx=TINY_SHAPE_ZYX,
        n_levels=1,
        difficulty="easy",
        scale_counts_to_shape=False,
        counts=_TINY_COUNTS,
        n_debris=(5, 10),
        n_vesicles=(0, 0),
        n_gold=(0, 1),
        tomo_types=("denoised",),
    )
    return simulate_dataset(root, n_runs, seed=seed, config=config, progress=False)


def tiny_config(
    root: str | Path,
    runs: Sequence[str],
    out_dir: str | Path,
    epochs: int = 1,
    tracking: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """A base config that trains a 2-level U-Net on 16 x 32 x 32 patches for ``epochs`` epochs in seconds;
    the last run validates. ``overrides`` (``{"section.key": value}``) change anything else."""
    if len(runs) < 2:
        raise ValueError(f"tiny_config needs at least 2 runs (train and validation), got {list(runs)}")
    return apply_overrides(
        RunConfig(),
        {
            "data.root": str(root),
            "data.val_runs": [runs[-1]],
            "model.channels": [4, 8],
            "model.strides": [2],
            "patch.size_zyx": [16, 32, 32],
            "patch.patches_per_epoch": 8,
            "patch.batch_size": 2,
            "patch.inference_batch_size": 8,
            "patch.inference_overlap": 0.0,
            "train.epochs": epochs,
            "train.warmup_steps": 2,
            "train.out_dir": str(out_dir),
            "tracking.enabled": tracking,
            **dict(overrides or {}),
        },
    )


def demo_solution(n_runs: int = 3, seed: int = 0, references_per_type: int = 25) -> pd.DataFrame:
    """References of all six types at random places in ``n_runs`` runs of the real size (Angstrom)."""
    from cryokit.synth.config import REFERENCE_SHAPE_ZYX, REFERENCE_SPACING_ANGSTROM_ZYX

    rng = np.random.default_rng(seed)
    extent_xyz = voxel_zyx_to_angstrom_xyz(np.asarray(REFERENCE_SHAPE_ZYX) - 1, REFERENCE_SPACING_ANGSTROM_ZYX)[0]
    rows = [
        (f"TS_demo_{r}", name, *xyz)
        for r in range(n_runs)
        for name in PARTICLE_NAMES
        for xyz in rng.uniform(0, extent_xyz, size=(rng.poisson(references_per_type), 3))
    ]
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])


def demo_candidates(solution: pd.DataFrame, seed: int = 0, strays_per_reference: float = 3.0) -> pd.DataFrame:
    """Scored candidates around ``solution``, like a model's: most references get a hit (score ~ Beta,
    harder classes lower), some a duplicate close by, and strays with low scores fill each run."""
    rng = np.random.default_rng(seed)
    difficulty = {p.name: (2.0 if p.difficulty == "hard" else 4.0) for p in PARTICLES}
    frames = []
    for (run, name), refs in solution.groupby(["experiment", "particle_type"], sort=False):
        xyz = refs[["x", "y", "z"]].to_numpy(np.float64)
        radius = next(p.match_radius_angstrom for p in PARTICLES if p.name == name)
        hits = np.repeat(xyz, rng.choice([0, 1, 2], p=[0.1, 0.7, 0.2], size=len(xyz)), axis=0)
        hits = hits + rng.normal(scale=0.4 * radius, size=hits.shape)
        strays = rng.uniform(
            xyz.min(axis=0) - 200, xyz.max(axis=0) + 200, size=(rng.poisson(strays_per_reference * len(xyz)), 3)
        )
        scores = np.concatenate([rng.beta(difficulty[name], 2.0, size=len(hits)), rng.beta(1.2, 5.0, size=len(strays))])
        points = np.vstack([hits, strays])
        frames.append(
            pd.DataFrame(
                {
                    "experiment": run,
                    "particle_type": name,
                    "x": points[:, 0],
                    "y": points[:, 1],
                    "z": points[:, 2],
                    "score": scores,
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values("score", ascending=False, ignore_index=True)
