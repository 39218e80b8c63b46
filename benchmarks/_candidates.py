"""Scored candidates of the benchmarks' models, predicted once per model, TTA and run and kept on disk.

The fold benchmarks (``ensemble_folds``, ``detector_folds``, ``detector_shipped``, ``threshold_scale``, ...)
score the same trained models on the same unseen runs; flipped candidates cost 8 passes a run. Each group of
checkpoints' candidates of one run and TTA are written beside the data (``<data root>/../candidate_cache``),
keyed by the checkpoints' paths, sizes and modification times: a retrained model is predicted anew.
The cache is this machine's own scratch (parquet and JSON, never pickles).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from cryokit.inference.predict import group_candidates
from cryokit.io.atomic import atomic_path, atomic_write_text


def _key(checkpoints: list[Path], root: Path, run: str, tta: str) -> str:
    stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in checkpoints]
    return hashlib.sha1(json.dumps([stamp, str(root.resolve()), run, tta]).encode()).hexdigest()[:16]


def run_candidates(checkpoints: list[Path], root: Path, run: str, tta: str) -> pd.DataFrame:
    """Every scored candidate of ``checkpoints`` (one group: averaged map by map) on ``run`` with ``tta``."""
    cache = root.parent / "candidate_cache"
    key = _key([Path(c) for c in checkpoints], root, run, tta)
    table, attrs = cache / f"{key}.parquet", cache / f"{key}.json"
    if table.is_file() and attrs.is_file():
        frame = pd.read_parquet(table)
        frame.attrs.update(json.loads(attrs.read_text()))
        return frame
    frame = group_candidates([str(c) for c in checkpoints], str(root), "train", [run], tta, progress=False)[1][0]
    with atomic_path(table) as partial:
        frame.to_parquet(partial, index=False)
    # Written last: a table without its attributes is predicted anew.
    atomic_write_text(attrs, json.dumps(frame.attrs, default=float))
    return frame


def candidates_by_run(checkpoints: list[Path], root: Path, runs: list[str], tta: str) -> dict[str, pd.DataFrame]:
    """Every scored candidate of one ensemble group (``checkpoints`` averaged map by map) on each run."""
    return {run: run_candidates(checkpoints, root, run, tta) for run in runs}


def runs_candidates(checkpoints: list[Path], root: Path, runs: list[str], tta: str) -> pd.DataFrame:
    """``run_candidates`` of several runs in one table; ``attrs["tta"]`` records the TTA (``fit_ensemble``)."""
    frame = pd.concat([run_candidates(checkpoints, root, run, tta) for run in runs], ignore_index=True)
    frame.attrs = {"tta": tta}
    return frame
