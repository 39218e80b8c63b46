"""Ship cryokit inside a notebook: the modules an entry module needs, zipped, and offline wheels.

Kaggle scores a code competition by running one notebook with the internet off, so the notebook must
carry cryokit itself. ``collect_modules`` walks the import graph of an entry module by reading the
source (``ast``; nothing is imported): every ``import cryokit...`` / ``from cryokit... import`` at any
depth, function-level (lazy) imports included, plus the packages above each module. ``pack_modules``
zips those files byte for byte, so the notebook runs the library's own code, never a copy that drifts.

Third-party packages the Kaggle image lacks travel as wheels in the attached dataset:
``stage_wheels`` downloads them with pip or, offline, repacks the installed pure-Python distribution.
``third_party_imports`` lists what the packed modules import at module level, so a test can check that
nothing outside the Kaggle image and the shipped wheels is needed just to import them.
"""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import importlib.metadata
import io
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = [
    "ENTRY_MODULES",
    "KAGGLE_IMAGE_MODULES",
    "WHEEL_DISTRIBUTIONS",
    "NOT_AT_IMPORT",
    "package_root",
    "collect_modules",
    "third_party_imports",
    "pack_modules",
    "encode_payload",
    "pack_installed_wheel",
    "download_wheel",
    "stage_wheels",
]

log = logging.getLogger(__name__)

# What the Kaggle inference notebook imports from cryokit; everything it needs follows from these.
ENTRY_MODULES: tuple[str, ...] = ("cryokit.kaggle.runtime",)
# Third-party packages of Kaggle's standard image that the packed modules may import at module level
# (numcodecs comes with zarr: the tomogram reader decodes chunks with it).
KAGGLE_IMAGE_MODULES = frozenset({"numcodecs", "numpy", "pandas", "scipy", "torch", "tqdm", "yaml", "zarr"})
# Pure-Python distributions shipped as wheels in the dataset (monai is not in the image; einops in
# case it is not), as (distribution, top-level module).
WHEEL_DISTRIBUTIONS: tuple[tuple[str, str], ...] = (("monai", "monai"), ("einops", "einops"))
# Packages the inference path must never need at import time (not in the image, or training-only).
NOT_AT_IMPORT = frozenset({"cc3d", "copick", "matplotlib", "mlflow", "optuna", "seaborn", "torchio"})
# A zip entry's timestamp; fixed so that packing the same files twice gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def package_root() -> Path:
    """The ``cryokit`` package folder (holding ``__init__.py``)."""
    import cryokit

    return Path(cryokit.__file__).resolve().parent


def _module_file(name: str, root: Path) -> Path | None:
    """``cryokit.a.b`` -> ``root/a/b.py`` or ``root/a/b/__init__.py``; None when no such file."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    for candidate in (base / "__init__.py", base.with_suffix(".py") if parts else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _walk_imports(tree: ast.AST, module_level_only: bool):
    """Import nodes of a module; with ``module_level_only`` those inside function bodies are skipped."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif module_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_names(path: Path, module: str, module_level_only: bool = False) -> set[str]:
    """Absolute names imported by a module: ``import a.b`` gives a.b; ``from a import b`` gives a and
    a.b (b may be a submodule); relative imports are resolved against ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _walk_imports(tree, module_level_only):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    names.discard("")
    return names


def collect_modules(entries: Sequence[str] = ENTRY_MODULES, root: Path | None = None) -> dict[str, Path]:
    """Every cryokit module the entries need: ``{module name: source file}``, sorted by name.

    Follows all imports of cryokit modules (module-level and inside functions) and adds each module's
    parent packages, since importing ``cryokit.a.b`` runs ``cryokit/__init__.py`` and ``cryokit/a/__init__.py``.

    Raises:
        ValueError: an entry is not a cryokit module with a source file under ``root``.
    """
    root = Path(root) if root is not None else package_root()
    found: dict[str, Path] = {}
    queue = []
    for entry in entries:
        if _module_file(entry, root) is None:
            raise ValueError(f"entry module {entry!r} has no source file under {root}")
        queue.append(entry)
    while queue:
        name = queue.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            candidate = ".".join(parts[:depth])
            path = _module_file(candidate, root)
            if candidate in found or path is None:
                continue
            found[candidate] = path
            queue.extend(n for n in _imported_names(path, candidate) if n.split(".")[0] == "cryokit")
    return dict(sorted(found.items()))


def third_party_imports(modules: Mapping[str, Path], module_level_only: bool = True) -> dict[str, list[str]]:
    """``{top-level package: [cryokit modules importing it]}`` for imports outside cryokit and the stdlib.

    With ``module_level_only`` (the default) imports inside functions are left out: those run only
    when the function is called, so they are what "lazy" means here.
    """
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    users: dict[str, set[str]] = {}
    for module, path in modules.items():
        for name in _imported_names(path, module, module_level_only):
            top = name.split(".")[0]
            if top != "cryokit" and top not in stdlib:
                users.setdefault(top, set()).add(module)
    return {top: sorted(mods) for top, mods in sorted(users.items())}


def pack_modules(modules: Mapping[str, Path], root: Path | None = None) -> bytes:
    """A deterministic zip of the module files, as ``cryokit/...`` paths (extract it, put it on sys.path)."""
    root = Path(root) if root is not None else package_root()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(modules.values()):
            info = zipfile.ZipInfo(f"{root.name}/{path.relative_to(root).as_posix()}", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def encode_payload(payload: bytes) -> tuple[str, str]:
    """(base64 text, sha256 hex digest) of a zip."""
    return base64.b64encode(payload).decode("ascii"), hashlib.sha256(payload).hexdigest()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def _wheel_name(distribution: str, version: str) -> str:
    return f"{distribution.replace('-', '_')}-{version}-py3-none-any.whl"


def pack_installed_wheel(distribution: str, out_dir: str | Path) -> Path:
    """Repack an installed pure-Python distribution as a ``py3-none-any`` wheel (no network needed).

    Raises:
        ValueError: the distribution is not installed, or holds compiled extensions (download its
            wheel for the Kaggle platform instead and pass it with ``--wheels``).
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"cannot pack {distribution!r}: it is not installed in {sys.prefix}") from None
    skip_meta = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = []
    for item in dist.files or []:
        rel = Path(str(item))
        if ".." in rel.parts or "__pycache__" in rel.parts or rel.suffix == ".pyc":
            continue
        if rel.parts[0].endswith(".dist-info") and rel.name in skip_meta:
            continue
        if rel.suffix in (".so", ".pyd", ".dylib"):
            raise ValueError(
                f"cannot pack {distribution!r}: {rel} is a compiled extension; pass a wheel "
                "built for Kaggle's platform with --wheels"
            )
        files.append((rel.as_posix(), Path(dist.locate_file(item))))
    if not files:
        raise ValueError(f"cannot pack {distribution!r}: its installation lists no files (no RECORD)")
    info_dir = f"{distribution.replace('-', '_')}-{dist.version}.dist-info"
    wheel_meta = (
        f"Wheel-Version: 1.0\nGenerator: cryokit (repacked from {sys.prefix})\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n"
    ).encode()
    target = Path(out_dir) / _wheel_name(distribution, dist.version)
    return _write_wheel(target, files, info_dir, wheel_meta)


def _write_wheel(target: Path, files: list[tuple[str, Path]], info_dir: str, wheel_meta: bytes) -> Path:
    from cryokit.io.atomic import atomic_path

    entries = [(name, path.read_bytes()) for name, path in sorted(files) if not name.endswith("/WHEEL")]
    entries.append((f"{info_dir}/WHEEL", wheel_meta))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in entries:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{info_dir}/RECORD", "", ""])
    entries.append((f"{info_dir}/RECORD", record.getvalue().encode()))
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                archive.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), data, zipfile.ZIP_DEFLATED)
    return target


def download_wheel(distribution: str, version: str, out_dir: str | Path, timeout_s: float = 300) -> Path:
    """``pip download DIST==VERSION --no-deps --only-binary=:all:`` into ``out_dir``; the wheel's path.

    Raises:
        RuntimeError: pip failed (offline, unknown version, ...), with pip's last output lines.
    """
    out_dir = Path(out_dir)
    before = set(out_dir.glob("*.whl"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{distribution}=={version}",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(out_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    already = sorted(out_dir.glob(f"{distribution.replace('-', '_')}-{version}-*.whl"))  # pip keeps a present one
    new = sorted(set(out_dir.glob("*.whl")) - before) or already
    if result.returncode != 0 or not new:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"pip download {distribution}=={version} failed: {tail or 'no wheel written'}")
    return new[0]


def stage_wheels(
    out_dir: str | Path,
    wheels_dir: str | Path | None = None,
    source: str = "auto",
    distributions: Iterable[tuple[str, str]] = WHEEL_DISTRIBUTIONS,
) -> list[Path]:
    """Put a wheel of each distribution in ``out_dir``; returns the wheel paths.

    Args:
        wheels_dir: a folder of ready wheels; every ``*.whl`` there is copied and nothing is fetched.
        source: without ``wheels_dir``: "download" (pip, the installed version), "installed" (repack the
            installed files, offline) or "auto" (download, else repack).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if wheels_dir is not None:
        wheels = sorted(Path(wheels_dir).glob("*.whl"))
        if not wheels:
            raise FileNotFoundError(f"wheels folder {wheels_dir} holds no *.whl file")
        return [Path(shutil.copy2(w, out_dir / w.name)) for w in wheels]
    if source not in ("auto", "download", "installed"):
        raise ValueError(f"wheel source must be 'auto', 'download' or 'installed', got {source!r}")
    staged = []
    for distribution, _module in distributions:
        version = importlib.metadata.version(distribution)
        if source != "installed":
            try:
                staged.append(download_wheel(distribution, version, out_dir))
                continue
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                if source == "download":
                    raise
                log.warning("%s; repacking the installed %s %s instead", error, distribution, version)
        staged.append(pack_installed_wheel(distribution, out_dir))
    return staged
