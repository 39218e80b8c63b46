"""Scored candidate picks as CSV: the submission's columns plus ``score``, for threshold tuning.

``cryokit predict --keep-scores`` writes this file instead of thresholded picks; the threshold
notebook and ``cryokit.thresholds`` read it back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryokit.io.atomic import atomic_path
from cryokit.io.submission import SUBMISSION_COLUMNS, read_submission
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

__all__ = ["CANDIDATE_COLUMNS", "write_candidates", "read_candidates"]

CANDIDATE_COLUMNS: tuple[str, ...] = (*SUBMISSION_COLUMNS, "score")


def _scores(frame: pd.DataFrame, where: str) -> np.ndarray:
    if "score" not in frame.columns:
        raise ValueError(f"{where}: missing column 'score' (write candidates with cryokit predict --keep-scores)")
    values = pd.to_numeric(frame["score"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{where}: row {row}, column 'score' must be a finite number, got {frame['score'].iloc[row]!r}"
        )
    return values


def write_candidates(df: pd.DataFrame, path: str | os.PathLike, catalog: ParticleCatalog = COMPETITION_CATALOG) -> Path:
    """Write scored picks (experiment, particle_type, x, y, z, score) as CSV, atomically, ids 0..n-1.

    Raises:
        ValueError: a missing column, an unknown particle type, a non-finite coordinate or score.
    """
    path = Path(path)
    where = f"candidates for {path}"
    missing = [c for c in CANDIDATE_COLUMNS[1:] if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")
    for name in pd.unique(df["particle_type"]):
        catalog.check(name, where)
    out = pd.DataFrame(
        {
            "id": np.arange(len(df), dtype=np.int64),
            "experiment": df["experiment"].astype(str).to_numpy(),
            "particle_type": df["particle_type"].astype(str).to_numpy(),
        }
    )
    for column in ("x", "y", "z"):
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        if not np.isfinite(values).all():
            raise ValueError(f"{where}: row {int(np.argmax(~np.isfinite(values)))}, column {column!r} must be finite")
        out[column] = values
    out["score"] = _scores(df, where)
    with atomic_path(path) as temporary:
        out.to_csv(temporary, index=False)
    return path


def read_candidates(path: str | os.PathLike) -> pd.DataFrame:
    """Read a candidates CSV, validated like a submission, with ``score`` as float64."""
    frame = read_submission(path)
    frame["score"] = _scores(frame, str(path))
    return frame
