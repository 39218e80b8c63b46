"""Picks JSON (copick schema, COMPETITION.md 2.2) <-> tables and arrays in Angstrom x, y, z.

Kaggle names a run's files ``Picks/{particle}.json``; copick names them
``Picks/{user_id}_{session_id}_{particle}.json``. Both are read; writing uses the copick schema.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from cryokit.io.atomic import atomic_write_text
from cryokit.io.layout import list_runs, overlay_picks_dir, picks_dir_path
from cryokit.particles import PARTICLE_NAMES, check_particle_name

__all__ = [
    "PICK_COLUMNS",
    "empty_picks",
    "particle_from_filename",
    "read_picks_file",
    "read_run_picks",
    "read_picks",
    "read_solution",
    "picks_json",
    "write_picks_file",
    "write_run_picks",
    "centres_by_particle",
]

log = logging.getLogger(__name__)

PICK_COLUMNS = ["experiment", "particle_type", "x", "y", "z"]
_IDENTITY_4X4 = np.eye(4).tolist()


def empty_picks() -> pd.DataFrame:
    """A picks table with no rows and the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=float if c in "xyz" else object) for c in PICK_COLUMNS})


def particle_from_filename(path: str | Path) -> str:
    """``apo-ferritin.json`` or ``curation_0_apo-ferritin.json`` -> ``apo-ferritin``; else ValueError."""
    stem = Path(path).stem
    for name in sorted(PARTICLE_NAMES, key=len, reverse=True):
        if stem == name or stem.endswith(f"_{name}"):
            return name
    raise ValueError(
        f"picks file {path}: {stem!r} names no known particle type "
        "(expected {particle}.json or {user}_{session}_{particle}.json with one of "
        f"{', '.join(PARTICLE_NAMES)})"
    )


def read_picks_file(path: str | Path) -> tuple[str, np.ndarray]:
    """Read one picks file: ``(particle_name, centres_angstrom_xyz (N, 3))``.

    Raises ValueError naming the file when the JSON is malformed, the particle is unknown, a point has
    no numeric x, y, z, or the file has no ``points`` list. An empty ``points`` list is logged and
    gives zero rows (a run may hold none of a type).
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"picks file {path} is not valid JSON: {error}") from error
    if not isinstance(content, dict) or not isinstance(content.get("points"), list):
        raise ValueError(f"picks file {path} has no 'points' list")
    name = content.get("pickable_object_name") or particle_from_filename(path)
    check_particle_name(name, where=f"picks file {path}")
    centres = np.empty((len(content["points"]), 3), dtype=np.float64)
    for i, point in enumerate(content["points"]):
        try:
            location = point["location"]
            centres[i] = [float(location[axis]) for axis in "xyz"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"picks file {path}: point {i} has no numeric location x, y, z ({error!r})") from error
    if not np.all(np.isfinite(centres)):
        raise ValueError(f"picks file {path} has NaN or infinite coordinates")
    if len(centres) == 0:
        log.warning("picks file %s has no points", path)
    return name, centres


def read_run_picks(root: str | Path, split: str, run: str) -> pd.DataFrame:
    """All picks of one run as a DataFrame with columns experiment, particle_type, x, y, z (Angstrom)."""
    picks_dir = overlay_picks_dir(root, split, run)
    if not picks_dir.is_dir():
        raise FileNotFoundError(f"no picks for run {run!r}: {picks_dir} does not exist")
    frames, source_of = [], {}
    for path in sorted(picks_dir.glob("*.json")):
        name, centres = read_picks_file(path)
        if name in source_of:
            raise ValueError(f"run {run!r} has two picks files for {name}: {source_of[name]} and {path}")
        source_of[name] = path
        frame = pd.DataFrame(centres, columns=["x", "y", "z"])
        frame.insert(0, "particle_type", name)
        frame.insert(0, "experiment", run)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else empty_picks()


def read_picks(root: str | Path, split: str = "train", runs: Iterable[str] | None = None) -> pd.DataFrame:
    """Picks of several runs (all runs of the split by default), one table."""
    runs = list(runs) if runs is not None else list_runs(root, split)
    frames = [read_run_picks(root, split, run) for run in runs]
    return pd.concat(frames, ignore_index=True) if frames else empty_picks()


def read_solution(root: str | Path, split: str = "train", runs: Iterable[str] | None = None) -> pd.DataFrame:
    """Every run's picks with an ``id`` column: the ``solution`` table ``cryokit.metric.score`` takes."""
    picks = read_picks(root, split, runs)
    picks.insert(0, "id", np.arange(len(picks)))
    return picks


def picks_json(
    particle_name: str,
    run_name: str,
    centres_angstrom_xyz: np.ndarray,
    user_id: str = "curation",
    session_id: str = "0",
    scores: np.ndarray | None = None,
) -> dict:
    """The copick picks document for one run and particle."""
    check_particle_name(particle_name)
    centres = np.asarray(centres_angstrom_xyz, dtype=np.float64).reshape(-1, 3)
    points = []
    for i, (x, y, z) in enumerate(centres):
        point = {
            "location": {"x": float(x), "y": float(y), "z": float(z)},
            "transformation_": _IDENTITY_4X4,
            "instance_id": 0,
        }
        if scores is not None:
            point["score"] = float(scores[i])
        points.append(point)
    return {
        "pickable_object_name": particle_name,
        "user_id": user_id,
        "session_id": session_id,
        "run_name": run_name,
        "voxel_spacing": None,
        "unit": "angstrom",
        "points": points,
        "trust_orientation": True,
    }


def write_picks_file(
    path: str | Path, particle_name: str, run_name: str, centres_angstrom_xyz: np.ndarray, **kwargs
) -> Path:
    """Write one picks file atomically (keyword arguments as for ``picks_json``)."""
    document = picks_json(particle_name, run_name, centres_angstrom_xyz, **kwargs)
    return atomic_write_text(path, json.dumps(document, indent=1))


def write_run_picks(
    root: str | Path, split: str, run: str, centres_angstrom_xyz: Mapping[str, np.ndarray]
) -> list[Path]:
    """Write Kaggle-style ``{particle}.json`` files of one run (``{particle: (N, 3) Angstrom x, y, z}``)."""
    picks_dir = picks_dir_path(root, split, run)
    return [write_picks_file(picks_dir / f"{name}.json", name, run, xyz) for name, xyz in centres_angstrom_xyz.items()]


def centres_by_particle(picks: pd.DataFrame, run: str) -> dict[str, np.ndarray]:
    """(N, 3) Angstrom x, y, z arrays per particle type for one run of a picks table."""
    rows = picks[picks["experiment"] == run]
    return {
        name: rows.loc[rows["particle_type"] == name, ["x", "y", "z"]].to_numpy(np.float64) for name in PARTICLE_NAMES
    }
