"""Stage what the Kaggle API uploads: a dataset folder with the models and a kernel folder with the notebook.

``bundle`` stages a Kaggle dataset folder (inference-only checkpoints written by
``cryokit.training.checkpoint.export_inference_checkpoint``: weights, EMA ones where trained with EMA,
configuration and thresholds, no optimiser state, optionally fp16; ``thresholds.json``, optionally a
fitted ensemble's ``ensemble.json``, ``cryokit_bundle.json`` with each checkpoint's config and sizes, the
wheels Kaggle lacks, ``dataset-metadata.json``) and a kernel folder
(the notebook of ``cryokit.kaggle.notebook`` and ``kernel-metadata.json``: GPU on, internet off, the
dataset and competition attached), ready for ``kaggle datasets create -p DIR/dataset`` and
``kaggle kernels push -p DIR/kernel``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryokit.io.atomic import atomic_path, atomic_write_text
from cryokit.kaggle.embedding import stage_wheels
from cryokit.kaggle.notebook import build_notebook

__all__ = ["COMPETITION", "kernel_metadata", "dataset_metadata", "Bundle", "bundle", "bundle_names"]

COMPETITION = "czii-cryo-et-object-identification"
ENSEMBLE_FILE = "ensemble.json"  # a fitted ensemble's name in the dataset
_SLUG = re.compile(r"^[A-Za-z0-9_-]+/[a-z0-9][a-z0-9-]*$")


def _check_slug(slug: str, what: str, min_name: int) -> tuple[str, str]:
    if not _SLUG.match(slug) or not min_name <= len(slug.split("/")[1]) <= 50:
        raise ValueError(
            f"{what} {slug!r} must look like 'username/name' with a lowercase name of "
            f"{min_name} to 50 letters, digits or dashes"
        )
    owner, name = slug.split("/")
    return owner, name


def _title(name: str) -> str:
    """A title that Kaggle slugifies back to ``name`` ("cryokit-models" -> "Cryokit Models")."""
    return " ".join(part.capitalize() for part in name.split("-"))


def dataset_metadata(slug: str, title: str | None = None, license_name: str = "CC0-1.0") -> dict:
    """``dataset-metadata.json`` for ``kaggle datasets create``: title (6-50 characters), id, licenses."""
    _, name = _check_slug(slug, "dataset slug", 3)
    title = title or _title(name)
    if not 6 <= len(title) <= 50:
        raise ValueError(f"dataset title {title!r} must have 6 to 50 characters")
    return {"title": title, "id": slug, "licenses": [{"name": license_name}]}


def kernel_metadata(slug: str, code_file: str, dataset_slug: str, is_private: bool = True) -> dict:
    """``kernel-metadata.json`` for ``kaggle kernels push``: a GPU notebook, internet off (the API's
    default is on), the dataset and the competition attached."""
    _, name = _check_slug(slug, "kernel slug", 5)
    _check_slug(dataset_slug, "dataset slug", 3)
    return {
        "id": slug,
        "title": _title(name),
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": is_private,
        "enable_gpu": True,
        "enable_internet": False,
        "dataset_sources": [dataset_slug],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }


@dataclass(frozen=True)
class Bundle:
    """The staged folders: ``dataset`` (upload with ``kaggle datasets``), ``kernel`` and its notebook."""

    dataset: Path
    kernel: Path
    notebook: Path
    wheels: tuple[Path, ...]
    checkpoints: tuple[dict, ...] = ()


def bundle_names(paths: Sequence[Path]) -> list[str]:
    """The file name of each checkpoint in the bundle's one folder: its own name, or, where names repeat
    (``runs/a/best.pt runs/b/best.pt``), its folder's name first (``a-best.pt``, ``b-best.pt``)."""
    if not all(p.name.endswith(".pt") for p in paths):
        raise ValueError(f"checkpoint files must end in .pt, got {[p.name for p in paths]}")
    names = [p.name for p in paths]
    names = [f"{p.parent.name}-{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
    if len(set(names)) != len(names):
        names = [f"{i}-{name}" for i, name in enumerate(names)]
    return names


def _check_ensemble(ensemble, checkpoints: Sequence[Path], path: Path) -> None:
    """Refuse an ensemble that does not fit the checkpoints: one member per group, the same particles."""
    from cryokit.inference.predict import ensemble_mismatch
    from cryokit.training.checkpoint import load_model

    problem = ensemble_mismatch(ensemble, [load_model(c, "cpu") for c in checkpoints])
    if problem:
        raise ValueError(f"ensemble file {path} {problem}: give the checkpoints it was fitted on, in that order")


def _stage_dataset(
    folder: Path,
    checkpoints: Sequence[Path],
    thresholds: Path,
    dataset_slug: str,
    wheels_dir,
    wheel_source: str,
    names: Sequence[str] | None = None,
    dtype: str = "float32",
    ensemble=None,
) -> tuple[tuple[Path, ...], list[dict]]:
    """Export the checkpoints (inference only) and copy the thresholds (and ``ensemble``, a fitted
    ``cryokit.ensemble.Ensemble``), write the manifest with each config and size, stage the wheels."""
    import cryokit
    from cryokit.ensemble import save_ensemble
    from cryokit.kaggle.runtime import BUNDLE_MANIFEST
    from cryokit.thresholds import load_thresholds, save_thresholds
    from cryokit.training.checkpoint import export_inference_checkpoint, load_checkpoint

    folder.mkdir(parents=True)
    entries = []
    for path, name in zip(checkpoints, names or [p.name for p in checkpoints]):
        sizes = export_inference_checkpoint(path, folder / name, dtype)
        state = load_checkpoint(folder / name)
        entries.append(
            {
                "file": name,
                "config": state["config"],
                "thresholds": state.get("thresholds") or {},
                "voxel_spacing_angstrom_zyx": state.get("voxel_spacing_angstrom_zyx"),
                **sizes,
            }
        )
    save_thresholds(folder / "thresholds.json", load_thresholds(thresholds))
    if ensemble is not None:
        save_ensemble(folder / ENSEMBLE_FILE, ensemble)
    wheels = stage_wheels(folder, wheels_dir, wheel_source)
    manifest = {
        "cryokit_version": cryokit.__version__,
        "checkpoints": entries,
        "thresholds_file": "thresholds.json",
        "ensemble_file": ENSEMBLE_FILE if ensemble is not None else "",
        "wheels": [w.name for w in wheels],
    }
    atomic_write_text(folder / BUNDLE_MANIFEST, json.dumps(manifest, indent=2))
    atomic_write_text(folder / "dataset-metadata.json", json.dumps(dataset_metadata(dataset_slug), indent=2))
    return tuple(Path(w.name) for w in wheels), entries


def bundle(
    checkpoints: Sequence[str | Path],
    thresholds: str | Path,
    out: str | Path,
    dataset_slug: str = "INSERT_USERNAME/cryokit-models",
    kernel_slug: str | None = None,
    tta: str | None = None,
    wheels_dir: str | Path | None = None,
    wheel_source: str = "auto",
    is_private: bool = True,
    source: str | Path | None = None,
    dtype: str = "auto",
    ensemble: str | Path | None = None,
) -> Bundle:
    """Stage ``out/dataset`` and ``out/kernel`` for the Kaggle API (each folder replaced atomically).

    Args:
        checkpoints: trained checkpoints, most important first (the time guard drops the last first).
        thresholds: a ``thresholds.json`` (``cryokit.thresholds.save_thresholds``), copied after validation.
        dataset_slug, kernel_slug: "username/name"; the kernel defaults to "username/cryokit-inference".
        tta: the notebook's default TTA (None: "flips", or with an ensemble the most any of its members
            was fitted with: each member then predicts with its own). wheels_dir, wheel_source: see
            ``cryokit.kaggle.embedding.stage_wheels``.
        is_private: the kernel's visibility.
        dtype: how the checkpoints' floating-point weights are stored: "float32", "float16", "int8", or
            "auto" (int8 for networks of 10 M parameters or more, float16 below; see
            ``cryokit.training.checkpoint.export_inference_checkpoint``).
        ensemble: a fitted ensemble's JSON file (``cryokit ensemble``) over these checkpoints, in the order
            it was fitted on; the notebook then merges them with it (``cryokit.kaggle.runtime``).

    Returns:
        The staged folders, and per checkpoint its manifest entry (file, sizes before and after export).
    """
    from cryokit.ensemble import load_ensemble
    from cryokit.inference.tta import TTA_CHOICES, tta_transforms

    paths = [Path(c) for c in checkpoints]
    if not paths:
        raise ValueError("bundle needs at least one checkpoint")
    fitted = None
    if ensemble is not None:
        fitted = load_ensemble(ensemble)  # raises naming the file
        _check_ensemble(fitted, paths, Path(ensemble))
    if tta is None:
        tta = max(fitted.tta, key=TTA_CHOICES.index) if fitted is not None else "flips"
    tta_transforms(tta)
    names = bundle_names(paths)
    owner, dataset_name = _check_slug(dataset_slug, "dataset slug", 3)
    kernel_slug = kernel_slug or f"{owner}/cryokit-inference"
    code_file = f"{_check_slug(kernel_slug, 'kernel slug', 5)[1]}.ipynb"
    out = Path(out)
    with atomic_path(out / "dataset") as tmp:
        wheels, entries = _stage_dataset(
            tmp,
            paths,
            Path(thresholds),
            dataset_slug,
            wheels_dir,
            wheel_source,
            names=names,
            dtype=dtype,
            ensemble=fitted,
        )
    parameters = {
        "model_dir": f"/kaggle/input/{dataset_name}",
        "checkpoints": names,
        "thresholds_file": "thresholds.json",
        "ensemble_file": ENSEMBLE_FILE if fitted is not None else "",
        "tta": tta,
    }
    with atomic_path(out / "kernel") as tmp:
        tmp.mkdir(parents=True)
        build_notebook(tmp / code_file, parameters, source)
        metadata = kernel_metadata(kernel_slug, code_file, dataset_slug, is_private)
        atomic_write_text(tmp / "kernel-metadata.json", json.dumps(metadata, indent=2))
    return Bundle(
        out / "dataset",
        out / "kernel",
        out / "kernel" / code_file,
        tuple(out / "dataset" / w for w in wheels),
        tuple({k: e[k] for k in ("file", "source_bytes", "bytes", "weights", "dtype")} for e in entries),
    )
