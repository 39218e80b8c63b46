"""Data access for the Kaggle / copick layout: paths, tomograms, picks, submissions."""

from cryokit.io.atomic import atomic_path, atomic_write_text
from cryokit.io.layout import (
    SPLITS,
    TOMO_TYPES,
    VOXEL_SPACING_DIR,
    list_runs,
    overlay_picks_dir,
    split_dir,
    static_run_dir,
    tomogram_path,
)
from cryokit.io.picks import (
    PICK_COLUMNS,
    centres_by_particle,
    empty_picks,
    particle_from_filename,
    picks_json,
    read_picks,
    read_picks_file,
    read_run_picks,
    read_solution,
    write_picks_file,
    write_run_picks,
)
from cryokit.io.source import DataSource, KaggleSource
from cryokit.io.tomogram import (
    Tomogram,
    downsample_2x,
    level_shapes_zyx,
    open_run_tomogram,
    open_tomogram,
    read_multiscales,
    write_tomogram,
)

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "SPLITS",
    "TOMO_TYPES",
    "VOXEL_SPACING_DIR",
    "list_runs",
    "overlay_picks_dir",
    "split_dir",
    "static_run_dir",
    "tomogram_path",
    "PICK_COLUMNS",
    "centres_by_particle",
    "empty_picks",
    "particle_from_filename",
    "picks_json",
    "read_picks",
    "read_picks_file",
    "read_run_picks",
    "read_solution",
    "write_picks_file",
    "write_run_picks",
    "Tomogram",
    "downsample_2x",
    "level_shapes_zyx",
    "open_run_tomogram",
    "open_tomogram",
    "read_multiscales",
    "write_tomogram",
    "DataSource",
    "KaggleSource",
]
