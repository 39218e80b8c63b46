"""Predictions into a copick project as picks: one picks file per run and object, through copick's API.

``write_copick_picks`` writes a session ``USER/SESSION`` into the project's overlay with copick's own
``run.new_picks`` and ``picks.from_numpy`` (locations in Angstrom, identity orientations, scores kept), so
napari-copick and ``copick export picks`` read them like any other picks. It touches only picks of that
user and session: an existing session is refused unless ``overwrite`` is set, and the session is written
all or nothing (a failure part-way deletes what this call wrote, and with ``overwrite`` stale objects
of the old session are removed only after the new one is complete).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from cryokit.io.source import CopickSource
from cryokit.particles import ParticleCatalog

__all__ = ["PicksSession", "parse_picks_session", "refuse_existing_session", "write_copick_picks"]

log = logging.getLogger(__name__)

# copick's filesystem backend names picks files {user}_{session}_{object}.json: keep both parts parseable.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")


@dataclass(frozen=True)
class PicksSession:
    """Whose picks: copick ``user_id`` and ``session_id``."""

    user_id: str
    session_id: str

    def __str__(self) -> str:
        return f"{self.user_id}/{self.session_id}"


def parse_picks_session(text: str) -> PicksSession:
    """``"USER/SESSION"`` -> ``PicksSession``; letters, digits, '.' and '-' only (copick splits on '_')."""
    parts = str(text).split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise ValueError(
            f"picks session {text!r} must be USER/SESSION of letters, digits, '.' and '-' (e.g. cryokit/1)"
        )
    return PicksSession(*parts)


def refuse_existing_session(source: CopickSource, runs: Sequence[str], session: PicksSession) -> None:
    """Raise FileExistsError if the session holds picks in any of ``runs`` (call before a long prediction)."""
    root, taken = source.root(), []
    for name in runs:
        run = root.get_run(name)
        if run is None:
            raise ValueError(f"{source.describe()} has no run {name!r} to write picks into")
        run.refresh_picks()  # another process may have written since this root was opened
        found = run.get_picks(user_id=session.user_id, session_id=session.session_id)
        taken += [f"{name}:{p.pickable_object_name}" for p in found]
    if taken:
        _refuse(source, session, taken)


def _refuse(source: CopickSource, session: PicksSession, taken: list[str]) -> None:
    raise FileExistsError(
        f"{source.describe()}: picks session {session} already exists ({', '.join(taken[:6])}"
        f"{' ...' if len(taken) > 6 else ''}); choose another session or pass --overwrite-picks"
    )


def write_copick_picks(
    source: CopickSource,
    picks: pd.DataFrame,
    runs: Sequence[str],
    session: PicksSession,
    catalog: ParticleCatalog,
    overwrite: bool = False,
    objects: Sequence[str] | None = None,
) -> dict[tuple[str, str], int]:
    """Write ``picks`` (experiment, particle_type, x, y, z in Angstrom, optional score) as copick picks.

    Every run of ``runs`` gets one picks file per predicted object (``objects``, default every catalog
    object; empty when nothing was found), so a reader can tell "predicted, none found" from "not
    predicted".

    Returns:
        ``{(run, object): number of points}`` for every file written.

    Raises:
        FileExistsError: the session already holds picks in one of ``runs`` and ``overwrite`` is False.
        ValueError: a pick names a run outside ``runs`` or an object outside the catalog.
    """
    stray_runs = sorted(set(picks["experiment"]) - set(runs))
    if stray_runs:
        raise ValueError(f"picks name run(s) {stray_runs} that are not among the runs to write")
    objects = list(catalog.names if objects is None else objects)
    stray_objects = sorted(set(picks["particle_type"]) - set(objects))
    if stray_objects:
        raise ValueError(f"picks name object(s) {stray_objects} not among {objects} of {source.describe()}")
    for name in objects:
        catalog.check(name, source.describe())
    root = source.root()
    copick_runs = {}
    existing: dict[str, list] = {}
    for name in runs:
        run = root.get_run(name)
        if run is None:
            raise ValueError(f"{source.describe()} has no run {name!r} to write picks into")
        run.refresh_picks()  # another process may have written since this root was opened
        copick_runs[name] = run
        existing[name] = run.get_picks(user_id=session.user_id, session_id=session.session_id)
    taken = [f"{n}:{p.pickable_object_name}" for n, found in existing.items() for p in found]
    if taken and not overwrite:
        _refuse(source, session, taken)
    written: dict[tuple[str, str], int] = {}
    created = []
    try:
        for name, run in copick_runs.items():
            mine = picks[picks["experiment"] == name]
            for obj in objects:
                rows = mine[mine["particle_type"] == obj]
                xyz = rows[["x", "y", "z"]].to_numpy(np.float64).reshape(-1, 3)
                scores = rows["score"].to_numpy(np.float64) if "score" in rows.columns else None
                had = any(p.pickable_object_name == obj for p in existing[name])
                target = run.new_picks(obj, session.session_id, session.user_id, exist_ok=True)
                if not had:
                    created.append(target)
                target.from_numpy(xyz, np.tile(np.eye(4), (len(xyz), 1, 1)), scores=scores)
                target.store()
                written[(name, obj)] = len(xyz)
    except Exception:
        for target in created:  # all or nothing: remove what this call created
            try:
                target.delete()
            except Exception as error:  # noqa: BLE001 -- report, keep cleaning
                log.error("could not remove partial picks %s: %s", target, error)
        raise
    for found in existing.values():  # overwrite: objects of the old session this catalog lacks
        for old in found:
            if old.pickable_object_name not in objects:
                old.delete()
    return written
