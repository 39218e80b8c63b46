"""Where runs come from: one small interface over the Kaggle layout and over any copick project.

Training, validation, prediction and the baseline ask a ``DataSource`` for the names of its runs, a
run's tomogram (one tomo type and multiscale level, opened lazily), its picks and the particle catalog.
``KaggleSource`` reads a competition-layout root (``cryokit.io.layout``) with the competition's six
particles. ``CopickSource`` reads a copick project through copick's own API (``copick.from_file``,
``run.get_voxel_spacing``, ``tomogram.zarr()``, ``run.get_picks``), so every backend copick supports
(local files, the CZ cryoET Data Portal, S3) works as copick makes it work; its catalog is the project's
pickable particles. A source is a small frozen value, so it travels to data-loader workers as it is
(a copick root is opened once per process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
import pandas as pd

from cryokit.io.layout import list_runs
from cryokit.io.picks import read_picks, read_solution
from cryokit.io.tomogram import Tomogram, open_run_tomogram
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

__all__ = ["DataSource", "KaggleSource", "CopickSource", "MissingCopickData"]


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

    def catalog(self) -> ParticleCatalog:
        """The particles this source's picks name (class index ``k`` is ``catalog().particles[k]``)."""
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

    def catalog(self) -> ParticleCatalog:
        return COMPETITION_CATALOG


class MissingCopickData(ValueError):
    """A copick project lacks what was asked for: a run, a voxel spacing, a tomo type or a picks session."""


_ROOTS: dict[tuple[str, int], object] = {}


def _open_copick(config: str):
    import os

    try:
        import copick
    except ImportError as error:
        raise ValueError(
            f"reading copick config {config} needs the copick package: pip install 'copick>=1.31'"
        ) from error
    key = (config, os.getpid())
    if key not in _ROOTS:
        if "://" not in config and not Path(config).is_file():
            raise FileNotFoundError(f"copick config {config} does not exist")
        try:
            _ROOTS[key] = copick.from_file(config)
        except Exception as error:  # pydantic, JSON and fsspec errors alike
            raise ValueError(f"copick config {config} cannot be opened ({type(error).__name__}: {error})") from error
    return _ROOTS[key]


@dataclass(frozen=True)
class CopickSource:
    """Runs of a copick project at one voxel spacing, read through copick.

    Attributes:
        config: the copick config file (``copick.from_file``); local, Data Portal or S3 alike.
        voxel_spacing_angstrom: the tomograms' voxel spacing as copick names it (e.g. 7.84, 10.012).
        pick_user, pick_session: whose picks train and score (``run.get_picks(name, user_id, session_id)``);
            empty ``pick_session`` takes every session of ``pick_user``. Not needed to predict.
        runs: restrict to these runs (empty: every run of the project).
    """

    config: str
    voxel_spacing_angstrom: float
    pick_user: str = ""
    pick_session: str = ""
    runs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", str(self.config))
        object.__setattr__(self, "runs", tuple(self.runs))
        if not self.voxel_spacing_angstrom or float(self.voxel_spacing_angstrom) <= 0:
            raise MissingCopickData(
                f"copick project {self.config}: no voxel spacing given (pass --voxel-spacing, in Angstrom, "
                "as copick names it)"
            )
        object.__setattr__(self, "voxel_spacing_angstrom", float(self.voxel_spacing_angstrom))

    def root(self):
        """The copick root (opened once per process)."""
        return _open_copick(self.config)

    def describe(self) -> str:
        return f"copick project {self.config} at {self.voxel_spacing_angstrom:g} A"

    def list_runs(self) -> list[str]:
        names = sorted(run.name for run in self.root().runs)
        if self.runs:
            missing = [r for r in self.runs if r not in names]
            if missing:
                raise MissingCopickData(f"{self.describe()} has no run(s) {missing}")
            return list(self.runs)
        if not names:
            raise MissingCopickData(f"{self.describe()} holds no runs")
        return names

    def catalog(self) -> ParticleCatalog:
        return ParticleCatalog.from_copick(self.root(), f"copick config {self.config}")

    def _run(self, run: str):
        found = self.root().get_run(run)
        if found is None:
            raise MissingCopickData(f"{self.describe()} has no run {run!r}")
        return found

    def voxel_spacing(self, run: str):
        """The run's copick voxel spacing object; a named error when the run lacks it."""
        found = self._run(run).get_voxel_spacing(self.voxel_spacing_angstrom)
        if found is None:
            have = sorted(vs.voxel_size for vs in self._run(run).voxel_spacings)
            raise MissingCopickData(
                f"{self.describe()}: run {run!r} has no voxel spacing {self.voxel_spacing_angstrom:g} A "
                f"(it has {', '.join(f'{v:g}' for v in have) or 'none'}); pass --voxel-spacing"
            )
        return found

    def open_tomogram(self, run: str, tomo_type: str = "denoised", level: int = 0) -> Tomogram:
        import zarr

        voxel_spacing = self.voxel_spacing(run)
        tomogram = voxel_spacing.get_tomogram(tomo_type)
        if tomogram is None:
            have = sorted(t.tomo_type for t in voxel_spacing.tomograms)
            raise MissingCopickData(
                f"{self.describe()}: run {run!r} has no tomogram of type {tomo_type!r} "
                f"(it has {', '.join(have) or 'none'}); pass --tomo-type"
            )
        where = Path(f"{self.config}#{run}/VoxelSpacing{self.voxel_spacing_angstrom:g}/{tomo_type}")
        group = zarr.open(tomogram.zarr(), mode="r")
        if str(level) not in group:
            raise MissingCopickData(f"tomogram {where} has no multiscale level {level}")
        array = group[str(level)]
        if array.ndim != 3:
            raise ValueError(f"tomogram {where} level {level} has shape {array.shape}; expected 3 axes (z, y, x)")
        return Tomogram(where, level, array, self._level_spacing_zyx(group, level))

    def _level_spacing_zyx(self, group, level: int) -> np.ndarray:
        try:
            for dataset in group.attrs["multiscales"][0]["datasets"]:
                if str(dataset["path"]) == str(level):
                    for transform in dataset.get("coordinateTransformations", []):
                        if transform.get("type") == "scale":
                            return np.asarray(transform["scale"][-3:], dtype=np.float64)
        except (KeyError, IndexError, TypeError):
            pass
        return np.full(3, self.voxel_spacing_angstrom * 2**level)

    def read_picks(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        if not self.pick_user:
            raise MissingCopickData(f"{self.describe()}: no picks user given (pass --pick-user and --pick-session)")
        names = self.catalog().names
        rows = []
        found_any = False
        for run in list(runs) if runs is not None else self.list_runs():
            kwargs = {"user_id": self.pick_user}
            if self.pick_session:
                kwargs["session_id"] = self.pick_session
            for picks in self._run(run).get_picks(**kwargs):
                found_any = True
                if picks.pickable_object_name not in names or not picks.points:
                    continue
                points_xyz, transforms = picks.numpy()
                # copick's particle centre is location + the transform's translation (Angstrom).
                centres_xyz = points_xyz + transforms[:, :3, 3]
                rows.append(
                    pd.DataFrame(
                        {
                            "experiment": run,
                            "particle_type": picks.pickable_object_name,
                            "x": centres_xyz[:, 0],
                            "y": centres_xyz[:, 1],
                            "z": centres_xyz[:, 2],
                        }
                    )
                )
        if not found_any:
            session = self.pick_session or "*"
            raise MissingCopickData(
                f"{self.describe()}: no picks by user {self.pick_user!r} in session {session!r} in the runs read; "
                "check --pick-user and --pick-session"
            )
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _PICK_COLUMNS.items()})
        table = pd.concat(rows, ignore_index=True).astype(_PICK_COLUMNS)
        return table.sort_values(["experiment", "particle_type"], kind="stable", ignore_index=True)

    def read_solution(self, runs: Iterable[str] | None = None) -> pd.DataFrame:
        table = self.read_picks(runs)
        table.insert(0, "id", np.arange(len(table)))
        return table


_PICK_COLUMNS = {"experiment": str, "particle_type": str, "x": np.float64, "y": np.float64, "z": np.float64}
