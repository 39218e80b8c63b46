"""The Kaggle submission CSV: write it atomically, read it back with row-level validation.

Format (COMPETITION.md 3): header ``id,experiment,particle_type,x,y,z``; ``id`` a unique integer per
row, ``experiment`` the run name, ``particle_type`` one of the six catalog names, ``x, y, z`` finite
coordinates in Angstrom.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryokit.io.atomic import atomic_path
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

__all__ = ["SUBMISSION_COLUMNS", "write_submission", "read_submission"]

SUBMISSION_COLUMNS: tuple[str, ...] = ("id", "experiment", "particle_type", "x", "y", "z")
_XYZ = ("x", "y", "z")
_FIRST_DATA_LINE = 2  # line 1 of the CSV is the header


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}")


def _row(row: int, first_line: int | None) -> str:
    """'row 3', or 'row 3 (line 5)' when reading a file whose data starts at ``first_line``."""
    return f"row {row}" if first_line is None else f"row {row} (line {row + first_line})"


def _check_types(
    types: pd.Series, where: str, first_line: int | None = None, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> None:
    """Raise naming the first row (0-based data row) whose particle_type is not in the catalog."""
    unknown = ~types.isin(catalog.names).to_numpy()
    if unknown.any():
        row = int(np.argmax(unknown))
        catalog.check(types.iloc[row], where=f"{_row(row, first_line)} of {where}")


def _coordinates_angstrom(frame: pd.DataFrame, where: str, first_line: int | None = None) -> dict[str, np.ndarray]:
    """x, y, z as float64 arrays; raise naming the first non-numeric or non-finite cell."""
    out = {}
    for column in _XYZ:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(
                f"{where}: {_row(row, first_line)}, column {column!r} must be a finite "
                f"number (Angstrom), got {frame[column].iloc[row]!r}"
            )
        out[column] = values
    return out


def _check_experiments(experiments: pd.Series, where: str, first_line: int | None = None) -> None:
    missing = experiments.isna().to_numpy() | (experiments.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(f"{where}: {_row(row, first_line)}, column 'experiment' is empty")


def _ids(ids: pd.Series, path: Path) -> np.ndarray:
    """The id column as int64; raise naming the first non-integer or repeated id."""
    numeric = pd.to_numeric(ids, errors="coerce")
    bad = (numeric.isna() | (numeric % 1 != 0)).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{path}: {_row(row, _FIRST_DATA_LINE)}, column 'id' must be an integer, got {ids.iloc[row]!r}"
        )
    values = numeric.to_numpy().astype(np.int64)
    repeated = pd.Series(values).duplicated().to_numpy()
    if repeated.any():
        row = int(np.argmax(repeated))
        raise ValueError(f"{path}: {_row(row, _FIRST_DATA_LINE)}, id {values[row]} is not unique")
    return values


def write_submission(df: pd.DataFrame, path: str | os.PathLike, catalog: ParticleCatalog = COMPETITION_CATALOG) -> Path:
    """Write predictions as the Kaggle submission CSV, atomically.

    Args:
        df: one row per candidate with columns experiment, particle_type, x, y, z (Angstrom);
            other columns (``id``, ``score``, ...) are dropped and ids are renumbered 0..n-1.
        path: destination CSV; its folder is created if needed, an existing file is replaced only
            once the new one is completely written.

    Returns:
        The path written.

    Raises:
        ValueError: a missing column, an unknown particle type, an empty experiment or a
            non-numeric / non-finite coordinate, naming the row and ``path``.
    """
    path = Path(path)
    where = f"submission for {path}"
    _require_columns(df, SUBMISSION_COLUMNS[1:], where)
    _check_types(df["particle_type"], where, catalog=catalog)
    _check_experiments(df["experiment"], where)
    xyz = _coordinates_angstrom(df, where)
    out = pd.DataFrame(
        {
            "id": np.arange(len(df), dtype=np.int64),
            "experiment": df["experiment"].astype(str).to_numpy(),
            "particle_type": df["particle_type"].astype(str).to_numpy(),
            **xyz,
        },
        columns=list(SUBMISSION_COLUMNS),
    )
    with atomic_path(path) as temporary:  # sibling temp file, renamed over path on success
        out.to_csv(temporary, index=False)
    return path


def read_submission(path: str | os.PathLike, catalog: ParticleCatalog = COMPETITION_CATALOG) -> pd.DataFrame:
    """Read and validate a submission CSV.

    Args:
        path: a CSV with header ``id,experiment,particle_type,x,y,z`` (extra columns are kept).

    Returns:
        The table with ``id`` as int64, experiment and particle_type as str, x, y, z as float64.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unreadable CSV, missing columns, unknown particle type, non-numeric or
            non-finite coordinate, empty experiment, non-integer or duplicate ids; the message
            names ``path`` and, where it applies, the 0-based data row and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"submission file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable submission CSV ({error})") from error
    _require_columns(frame, SUBMISSION_COLUMNS, str(path))
    _check_types(frame["particle_type"], str(path), _FIRST_DATA_LINE, catalog)
    _check_experiments(frame["experiment"], str(path), _FIRST_DATA_LINE)
    for column, values in _coordinates_angstrom(frame, str(path), _FIRST_DATA_LINE).items():
        frame[column] = values
    frame["id"] = _ids(frame["id"], path)
    return frame
