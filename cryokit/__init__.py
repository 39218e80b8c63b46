"""cryokit: find protein complexes in cryo-electron tomograms (CZII CryoET Object Identification).

Data flows one way: ``io`` -> ``data`` -> ``models`` -> ``inference`` -> ``postprocess`` -> ``metric``;
``training`` and ``tuning`` sit beside ``inference`` and call the same stages, ``kaggle`` and ``demo`` sit
on top. The names below are the flat public API that notebooks use (``cryokit.fit``, ``cryokit.score``,
...); every module also has its own ``__all__``. They are imported on first use (PEP 562), so
``import cryokit`` is instant and a program that only scores submissions never imports torch.
"""

from __future__ import annotations

from cryokit._lazy import lazy_exports

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
        "KaggleSource",
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
    "cryokit.synth": ("SimulationConfig", "DomainRanges", "config_for_difficulty", "simulate_run", "simulate_dataset"),
    "cryokit.data.normalise": ("normalise_tomogram", "tomogram_intensity_stats", "read_region"),
    "cryokit.data.dataset": ("PatchDataset", "collate", "split_runs"),
    "cryokit.data.targets": ("ball_label_map", "gaussian_heatmaps"),
    "cryokit.data.augment": ("Sample", "Augmenter", "augment_sample"),
    "cryokit.models.anchors": ("anchor_radii_voxels",),
    "cryokit.models.detection_coder": ("encode_detection_targets", "decode_detections"),
    "cryokit.inference.sliding_window": ("sliding_window_maps",),
    "cryokit.inference.predict": ("predict_maps", "predict_runs"),
    "cryokit.training.loop": ("fit", "evaluate"),
    "cryokit.training.checkpoint": ("load_model",),
    "cryokit.postprocess": ("find_peaks_maxpool", "find_peaks_components", "maps_to_picks", "merge_picks"),
    "cryokit.metric": ("score", "score_table"),
    "cryokit.thresholds": ("best_thresholds", "load_thresholds", "save_thresholds"),
}

__getattr__, __dir__, _names = lazy_exports(__name__, _EXPORTS, globals())
__all__ = ["__version__", *_names]
