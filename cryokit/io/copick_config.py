"""A copick project over a Kaggle-layout dataset, the way the host's notebooks prepare it.

Kaggle ships picks as ``Picks/{particle}.json``; copick's filesystem backend expects
``Picks/{user_id}_{session_id}_{particle}.json`` (COMPETITION.md 2.1 and 2.3). ``write_copick_project``
writes ``copick_{split}.json`` (the competition's pickable objects, static root = the Kaggle
``{split}/static``) and a writable overlay holding the picks under copick's names.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryokit.io.atomic import atomic_write_text
from cryokit.io.layout import list_runs, overlay_picks_dir, split_dir
from cryokit.io.picks import read_picks_file, write_picks_file
from cryokit.particles import COPICK_NON_PARTICLES, PARTICLES

__all__ = ["copick_config", "write_copick_project"]


def copick_config(static_root: str | Path, overlay_root: str | Path) -> dict:
    """The host's copick config (name, description, version, objects) over the given roots."""
    return {
        "config_type": "filesystem",
        "name": "czii_cryoet_mlchallenge_2024",
        "description": "2024 CZII CryoET ML Challenge training data.",
        "version": "1.0.0",
        "pickable_objects": [p.copick_object() for p in PARTICLES] + [dict(o) for o in COPICK_NON_PARTICLES],
        "overlay_root": f"local://{Path(overlay_root).resolve()}",
        "overlay_fs_args": {"auto_mkdir": True},
        "static_root": f"local://{Path(static_root).resolve()}",
    }


def write_copick_project(
    data_root: str | Path, split: str, out_dir: str | Path, user_id: str = "curation", session_id: str = "0"
) -> Path:
    """Write ``out_dir/copick_{split}.json`` and ``out_dir/overlay`` with every run's picks renamed.

    Returns the config path. Picks are re-written (not copied) so that a malformed file fails here,
    naming the file, rather than later inside copick.
    """
    out_dir = Path(out_dir)
    overlay_root = out_dir / "overlay"
    for run in list_runs(data_root, split):
        source_dir = overlay_picks_dir(data_root, split, run)
        target_dir = overlay_root / "ExperimentRuns" / run / "Picks"
        target_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(source_dir.glob("*.json")) if source_dir.is_dir() else []:
            name, centres_angstrom_xyz = read_picks_file(path)
            write_picks_file(
                target_dir / f"{user_id}_{session_id}_{name}.json",
                name,
                run,
                centres_angstrom_xyz,
                user_id=user_id,
                session_id=session_id,
            )
    config = copick_config(split_dir(data_root, split) / "static", overlay_root)
    return atomic_write_text(out_dir / f"copick_{split}.json", json.dumps(config, indent=2))
