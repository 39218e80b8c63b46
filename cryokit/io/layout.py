"""Paths of the Kaggle competition layout (COMPETITION.md section 2), and run discovery.

```
ROOT/
  train/static/ExperimentRuns/{run}/VoxelSpacing10.000/{tomo_type}.zarr
  train/overlay/ExperimentRuns/{run}/Picks/{particle}.json
  test/static/ExperimentRuns/{run}/VoxelSpacing10.000/denoised.zarr
```

The ``*_path`` functions only build paths (for writing a layout); the others check that what they
return exists and raise ``FileNotFoundError`` naming the missing path and what was expected there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = [
    "SPLITS",
    "TOMO_TYPES",
    "VOXEL_SPACING_DIR",
    "split_dir",
    "spacing_dir_path",
    "picks_dir_path",
    "static_run_dir",
    "overlay_picks_dir",
    "tomogram_path",
    "list_runs",
    "select_runs",
]

SPLITS = ("train", "test")
TOMO_TYPES = ("denoised", "wbp", "ctfdeconvolved", "isonetcorrected")
# The competition ships one spacing folder; its name is fixed whatever the .zattrs scale says.
VOXEL_SPACING_DIR = "VoxelSpacing10.000"


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def split_dir(root: str | Path, split: str) -> Path:
    """``ROOT/{split}``; raises if the data root or the split folder is missing."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist (expected the Kaggle layout, see README)")
    path = root / _check_split(split)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist: no {split!r} split under data root {root}")
    return path


def spacing_dir_path(root: str | Path, split: str, run: str) -> Path:
    """``ROOT/{split}/static/ExperimentRuns/{run}/VoxelSpacing10.000`` (not checked): where tomograms go."""
    return Path(root) / _check_split(split) / "static" / "ExperimentRuns" / run / VOXEL_SPACING_DIR


def picks_dir_path(root: str | Path, split: str, run: str) -> Path:
    """``ROOT/{split}/overlay/ExperimentRuns/{run}/Picks`` (not checked): where picks files go."""
    return Path(root) / _check_split(split) / "overlay" / "ExperimentRuns" / run / "Picks"


def static_run_dir(root: str | Path, split: str, run: str) -> Path:
    """``ROOT/{split}/static/ExperimentRuns/{run}``; raises naming the run if it is missing."""
    runs_dir = split_dir(root, split) / "static" / "ExperimentRuns"
    path = runs_dir / run
    if not path.is_dir():
        known = ", ".join(list_runs(root, split)) if runs_dir.is_dir() else "none"
        raise FileNotFoundError(f"run {run!r} not found: {path} does not exist (runs in {split}: {known})")
    return path


def overlay_picks_dir(root: str | Path, split: str, run: str) -> Path:
    """``ROOT/{split}/overlay/ExperimentRuns/{run}/Picks`` of an existing split (the folder itself not checked)."""
    split_dir(root, split)
    return picks_dir_path(root, split, run)


def tomogram_path(root: str | Path, split: str, run: str, tomo_type: str = "denoised") -> Path:
    """Path of ``{tomo_type}.zarr`` of a run; raises with what is there instead when missing."""
    static_run_dir(root, split, run)
    spacing_dir = spacing_dir_path(root, split, run)
    if not spacing_dir.is_dir():
        found = sorted(p.name for p in spacing_dir.parent.glob("VoxelSpacing*"))
        raise FileNotFoundError(
            f"{spacing_dir} does not exist: expected a {VOXEL_SPACING_DIR} folder in run {run!r}"
            + (f", found {', '.join(found)}" if found else "")
        )
    path = spacing_dir / f"{tomo_type}.zarr"
    if not path.is_dir():
        found = sorted(p.stem for p in spacing_dir.glob("*.zarr"))
        raise FileNotFoundError(
            f"tomogram {path} does not exist: no tomo type {tomo_type!r} for run {run!r} "
            f"(available: {', '.join(found) or 'none'})"
        )
    return path


def list_runs(root: str | Path, split: str) -> list[str]:
    """Sorted run names of a split (folders under ``static/ExperimentRuns``)."""
    runs_dir = split_dir(root, split) / "static" / "ExperimentRuns"
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir} does not exist: no runs in split {split!r}")
    return sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def select_runs(available: Sequence[str], wanted: Sequence[str] | None, what: str = "--runs") -> list[str]:
    """``wanted`` checked against ``available`` (every available run when ``wanted`` is None).

    An empty list, a run that does not exist, or nothing available at all is an error naming the runs
    that exist, never an empty or partial selection that would give a plausible empty result.
    """
    available = list(available)
    listing = ", ".join(available) if available else "none"
    if wanted is None:
        if not available:
            raise ValueError("there are no runs to select from")
        return available
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    if not wanted:
        raise ValueError(f"{what} names no runs (the runs are: {listing})")
    unknown = [run for run in wanted if run not in set(available)]
    if unknown:
        raise ValueError(f"{what}: no run(s) {', '.join(unknown)} (the runs are: {listing})")
    return wanted
