"""cryokit: find protein complexes in cryo-electron tomograms (CZII CryoET Object Identification).

Data flows one way: ``io`` -> ``patching`` -> ``models`` -> ``postprocess`` -> ``metric``.
The public names below are the ones notebooks and the CLI use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from cryokit.coords import (
    VOXEL_CENTRE_OFFSET, angstrom_xyz_to_voxel_zyx, radius_angstrom_to_voxels, voxel_zyx_to_angstrom_xyz,
)
from cryokit.io import (
    Tomogram, list_runs, open_run_tomogram, open_tomogram, read_picks, read_run_picks, read_solution,
    write_picks_file, write_run_picks, write_tomogram,
)
from cryokit.particles import PARTICLE_NAMES, PARTICLES, SCORED_PARTICLE_NAMES, TOTAL_WEIGHT, Particle, particle
from cryokit.patching import normalise_tomogram, predict_tomogram, read_region, tomogram_intensity_stats
from cryokit.targets import (
    anchor_radii_voxels, ball_label_map, decode_detections, encode_detection_targets, gaussian_heatmaps,
)
from cryokit.augment import Sample, augment_sample
from cryokit.dataset import PatchDataset, collate, split_runs
from cryokit.postprocess import find_peaks_components, find_peaks_maxpool, maps_to_picks
from cryokit.synth import SimulationConfig, config_for_difficulty, simulate_dataset, simulate_run
