"""Shared helpers for benchmark scripts: describe the machine, update one section of BENCHMARKS.md.

Each benchmark owns one ``## <title>`` section of ``docs/BENCHMARKS.md`` and replaces only that
section (from its header to the next ``## `` header), so scripts can run in any order. A benchmark whose
section ends at its table can keep the paragraphs people wrote under it (``keep_notes``).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import platform
import time
from importlib import metadata
from pathlib import Path

from cryokit.io.atomic import atomic_write_text

__all__ = [
    "BENCHMARKS_PATH",
    "machine_description",
    "report_header",
    "read_section",
    "table_span",
    "notes_under_table",
    "update_section",
    "best_time",
]

BENCHMARKS_PATH = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
_TITLE_LINE = "# cryokit benchmarks"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> str:
    """One line naming the CPU, usable cores and the Python / numpy / scipy / pandas / torch versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{p} {_version(p)}" for p in ("numpy", "scipy", "pandas", "torch"))
    return (
        f"{_cpu_model()}, {usable} usable of {os.cpu_count()} cores, {platform.system()}; "
        f"Python {platform.python_version()}, {versions}"
    )


def report_header(
    command: str, date_note: str = "", machine_note: str = "", date: str | None = None, command_note: str = ""
) -> list[str]:
    """The lines a section opens with: the command that wrote it, the machine, the date (today unless given),
    each note after its line (``command_note`` e.g. how to run one part, ``machine_note`` that the cores were
    shared, ``date_note`` the minutes it took)."""
    return [
        f"- Command: `{command}`{f' {command_note}' if command_note else ''}",
        f"- Machine: {machine_description()}{f' {machine_note}' if machine_note else ''}",
        f"- Date: {date or datetime.date.today().isoformat()}{f'; {date_note}' if date_note else ''}",
    ]


def _section_span(lines: list[str], header: str) -> tuple[int, int] | None:
    """(index of the ``header`` line, index of the next ``## `` header or ``len(lines)``); None if absent."""
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == header), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def _replace_section(text: str, header: str, section: str) -> str:
    """``text`` with the block from ``header`` to the next ``## `` header replaced by ``section``."""
    lines = text.splitlines(keepends=True)
    span = _section_span(lines, header)
    if span is None:
        body = text.rstrip("\n")
        return f"{body}\n\n{section}" if body else f"{_TITLE_LINE}\n\n{section}"
    start, end = span
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")


def _section_body(text: str, title: str) -> str:
    """The body of the ``## {title}`` section of ``text`` ("" where there is none)."""
    lines = text.splitlines()
    span = _section_span(lines, f"## {title}")
    return "" if span is None else "\n".join(lines[span[0] + 1 : span[1]]).strip("\n")


def read_section(title: str, path: Path = BENCHMARKS_PATH) -> str:
    """The body of the ``## {title}`` section of ``path`` as it stands ("" where there is none)."""
    return _section_body(path.read_text() if path.exists() else "", title)


def table_span(lines: list[str]) -> tuple[int, int] | None:
    """(index of the first table line, index of the first line after that table) of a section's lines;
    None where it has no table."""
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return None
    return start, next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))


def notes_under_table(section: str) -> str:
    """The paragraphs under the first table of a section's body ("" where it has no table or nothing
    follows it): what people wrote by hand to explain the figures a benchmark generated above them."""
    lines = section.splitlines()
    span = table_span(lines)
    return "" if span is None else "\n".join(lines[span[1] :]).strip("\n")


def update_section(title: str, body: str, path: Path = BENCHMARKS_PATH, keep_notes: bool = False) -> Path:
    """Create or replace the ``## {title}`` section of ``path`` (docs/BENCHMARKS.md), atomically.

    Args:
        title: section title without the ``## `` prefix, e.g. ``"Metric"``.
        body: markdown under the header; must not contain a ``## `` header line of its own.
        path: the report file; created with a ``# cryokit benchmarks`` title line if missing.
        keep_notes: append the paragraphs under the table of the section as it stands
            (``notes_under_table``) to ``body``, which must then end at its own table: a re-run refreshes
            the figures without losing the prose that explains them (whoever re-runs it re-reads that prose).

    Returns:
        The path written.
    """
    if any(line.startswith("## ") for line in body.splitlines()):
        raise ValueError(f"section {title!r}: body must not contain '## ' headers")
    if keep_notes and notes_under_table(body):
        raise ValueError(f"section {title!r}: with keep_notes the body must end at its table")
    path.parent.mkdir(parents=True, exist_ok=True)
    section = f"## {title}\n\n{body.strip()}\n"
    # Locking the folder serialises read-modify-write between benchmarks run at the same time
    # without leaving a lock file behind.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else ""
        notes = notes_under_table(_section_body(text, title)) if keep_notes else ""
        if notes:
            section = f"## {title}\n\n{body.strip()}\n\n{notes}\n"
        atomic_write_text(path, _replace_section(text, f"## {title}", section))
    finally:
        os.close(folder)  # releases the lock
    return path


def best_time(function, *args, repeats: int) -> tuple[float, object]:
    """(best wall time in seconds over ``repeats`` calls, the last result): the least-disturbed run on a
    shared machine."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result
