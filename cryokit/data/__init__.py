"""From tomograms to training batches: ``normalise`` (robust per-tomogram intensities, regions),
``sampling`` (class-balanced patch origins, picks in a patch), ``targets`` (ball label maps, Gaussian
heatmaps), ``augment`` (voxels and picks moved together) and ``dataset`` (the training patches)."""

from cryokit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cryokit.data.normalise": (
            "IntensityStats",
            "intensity_stats",
            "tomogram_intensity_stats",
            "normalise",
            "normalise_tomogram",
            "normalise_tomogram_on",
            "read_region",
        ),
        "cryokit.data.sampling": (
            "class_sampling_weights",
            "choose_particle",
            "random_patch_origin",
            "particle_patch_origin",
            "picks_in_patch",
        ),
        "cryokit.data.targets": ("N_CLASSES", "class_radii_voxels", "ball_label_map", "gaussian_heatmaps"),
        "cryokit.data.augment": ("Sample", "Augmenter", "AugmentParams", "augment_sample"),
        "cryokit.data.dataset": ("PatchDataset", "collate", "split_runs"),
    },
    globals(),
)
