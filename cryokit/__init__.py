"""cryokit: find protein complexes in cryo-electron tomograms (CZII CryoET Object Identification).

Data flows one way: ``io`` -> ``patching`` / ``dataset`` -> ``models`` -> ``postprocess`` -> ``metric``.
The names below are the flat public API that notebooks use (``cryokit.fit``, ``cryokit.score``, ...);
every module also has its own ``__all__``. They are imported on first use (PEP 562), so
``import cryokit`` is instant and a program that only scores submissions never imports torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "cryokit.config": (
        "RunConfig",
        "MODEL_PRESETS",
        "load_config",
        "apply_overrides",
        "from_dict",
        "to_dict",
        "replace",
    ),
    "cryokit.particles": (
        "PARTICLES",
        "PARTICLE_NAMES",
        "SCORED_PARTICLE_NAMES",
        "TOTAL_WEIGHT",
        "Particle",
        "particle",
    ),
    "cryokit.coords": (
        "VOXEL_CENTRE_OFFSET",
        "angstrom_xyz_to_voxel_zyx",
        "voxel_zyx_to_angstrom_xyz",
        "radius_angstrom_to_voxels",
    ),
    "cryokit.io": (
        "Tomogram",
        "list_runs",
        "open_tomogram",
        "open_run_tomogram",
        "read_picks",
        "read_run_picks",
        "read_solution",
        "write_picks_file",
        "write_run_picks",
        "write_tomogram",
    ),
    "cryokit.io.submission": ("read_submission", "write_submission"),
    "cryokit.synth": ("SimulationConfig", "config_for_difficulty", "simulate_run", "simulate_dataset"),
    "cryokit.patching": ("normalise_tomogram", "tomogram_intensity_stats", "read_region", "predict_tomogram"),
    "cryokit.dataset": ("PatchDataset", "collate", "split_runs"),
    "cryokit.targets": (
        "ball_label_map",
        "gaussian_heatmaps",
        "anchor_radii_voxels",
        "encode_detection_targets",
        "decode_detections",
    ),
    "cryokit.augment": ("Sample", "augment_sample"),
    "cryokit.train": ("fit", "evaluate"),
    "cryokit.checkpoint": ("load_model",),
    "cryokit.inference": ("predict_maps", "predict_runs"),
    "cryokit.postprocess": ("find_peaks_maxpool", "find_peaks_components", "maps_to_picks", "merge_picks"),
    "cryokit.metric": ("score", "score_table"),
    "cryokit.thresholds": ("best_thresholds", "load_thresholds", "save_thresholds"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_MODULE_OF]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'cryokit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
