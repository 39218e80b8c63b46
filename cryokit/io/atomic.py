"""Write files and folders under a temporary name, then rename: a crash never leaves half a file.

A temporary is named ``.NAME.tmp-HOST-PID-RANDOM``. A process killed mid-write leaves it behind; the next
write of ``NAME`` removes those whose process is gone (same host), and older unnamed ones
(``.NAME.tmp-RANDOM``, ``.NAME.old-RANDOM``) after an hour, so they never pile up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success move it to ``path``, on error delete it.

    Works for files and folders (a zarr store). An existing ``path`` is replaced only once the new
    content is complete; with ``overwrite=False`` an existing ``path`` is an error.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            # os.replace cannot swap a folder over a non-empty folder: move the old one aside first.
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


_HOST = socket.gethostname().replace("-", "_")
_LEGACY_AGE_S = 3600.0


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        return False
    return False


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of ``path`` that earlier, killed writers left behind."""
    try:
        siblings = list(path.parent.glob(f".{path.name}.tmp-*")) + list(path.parent.glob(f".{path.name}.old-*"))
    except OSError:
        return
    for sibling in siblings:
        parts = sibling.name.rsplit(".", 1)[-1].split("-")  # tmp, HOST, PID, RANDOM (or tmp, RANDOM)
        if len(parts) == 4:
            stale = parts[1] == _HOST and parts[2].isdigit() and _process_gone(int(parts[2]))
        else:
            try:
                stale = time.time() - sibling.lstat().st_mtime > _LEGACY_AGE_S
            except OSError:
                continue
        if stale:
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
