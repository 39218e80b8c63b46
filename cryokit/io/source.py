"""Where runs come from: one small interface over the Kaggle layout (and, beside it, copick projects).

Training, validation, prediction and the baseline ask a ``DataSource`` for the names of its runs, a
run's tomogram (one tomo type and multiscale level, opened lazily) and its picks. ``KaggleSource`` reads
a competition-layout root (``cryokit.io.layout``); a source is a small frozen value, so it travels to
data-loader workers as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import pandas as pd

from cryokit.io.layout import list_runs
from cryokit.io.picks import read_picks, read_solution
from cryokit.io.tomogram import Tomogram, open_run_tomogram

__all__ = ["DataSource", "KaggleSource"]


class DataSource(Protocol):
    """Runs with tomograms and (for training data) picks in Angstrom, x, y, z."""

    def describe(self) -> str:
        """A short name for messages (a folder, a config file)."""
        ...

    def list_runs(self) -> list[str]: ...

    def open_tomogram(self, run: str, tomo_type: str = "denoised", level: int = 0) -> Tomogram: ...

    def read_picks(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        """Columns experiment, particle_type, x, y, z (Angstrom)."""
        ...

    def read_solution(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        """``read_picks`` with an ``id`` column: the metric's solution table."""
        ...


@dataclass(frozen=True)
class KaggleSource:
    """One split of a Kaggle-layout root (``ROOT/{split}/static``, ``ROOT/{split}/overlay``)."""

    root: Path
    split: str = "train"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def describe(self) -> str:
        return f"{self.root}/{self.split}"

    def list_runs(self) -> list[str]:
        return list_runs(self.root, self.split)

    def open_tomogram(self, run: str, tomo_type: str = "denoised", level: int = 0) -> Tomogram:
        return open_run_tomogram(self.root, self.split, run, tomo_type, level)

    def read_picks(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        return read_picks(self.root, self.split, runs)

    def read_solution(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        return read_solution(self.root, self.split, runs)
