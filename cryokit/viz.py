"""Interactive 3D viewing with napari (optional): a tomogram plus one points layer per particle type.

``napari_layers`` prepares the layers without importing napari (and is what the tests check);
``napari_view`` opens a viewer with them. napari is not a dependency of cryokit: install it with
``pip install "napari[all]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cryokit.coords import angstrom_xyz_to_voxel_zyx, radius_angstrom_to_voxels
from cryokit.io.layout import overlay_picks_dir
from cryokit.io.picks import read_run_picks
from cryokit.io.tomogram import open_run_tomogram
from cryokit.particles import PARTICLE_NAMES, particle

__all__ = ["NAPARI_INSTALL_HINT", "napari_layers", "napari_view"]

NAPARI_INSTALL_HINT = 'napari is not installed; install it with: pip install "napari[all]"'

LayerTuple = tuple[np.ndarray, dict[str, Any], str]


def napari_layers(
    root: str | Path, run: str, split: str = "train", tomo_type: str = "denoised", level: int = 0
) -> list[LayerTuple]:
    """napari layer-data tuples ``(data, kwargs, layer_type)``: the tomogram, then picks per type.

    The image is the (Z, Y, X) level read from the store, with robust contrast limits. Each type with
    picks gets a ``"points"`` layer of voxel (z, y, x) coordinates at that level (through
    ``cryokit.coords``), in its catalog colour, sized to its catalog diameter. A run without picks (the
    test split) gives the image only.
    """
    tomogram = open_run_tomogram(root, split, run, tomo_type, level)
    volume = tomogram.read()
    low, high = (float(v) for v in np.percentile(volume[::2, ::2, ::2], [0.5, 99.5]))
    layers: list[LayerTuple] = [
        (
            volume,
            {
                "name": f"{run} {tomo_type} (level {level})",
                "colormap": "gray",
                "contrast_limits": (low, high if high > low else low + 1.0),
            },
            "image",
        ),
    ]
    if not overlay_picks_dir(root, split, run).is_dir():
        return layers
    picks = read_run_picks(root, split, run)
    spacing_zyx = tomogram.voxel_spacing_angstrom_zyx
    for name in PARTICLE_NAMES:
        rows = picks[picks["particle_type"] == name]
        if len(rows) == 0:
            continue
        colour = np.asarray(particle(name).color_rgba, dtype=float) / 255.0
        diameter = 2 * radius_angstrom_to_voxels(particle(name).radius_angstrom, spacing_zyx)
        points_zyx = angstrom_xyz_to_voxel_zyx(rows[["x", "y", "z"]].to_numpy(), spacing_zyx)
        layers.append(
            (
                points_zyx,
                {"name": name, "size": diameter, "face_color": [*colour[:3], 0.5], "opacity": 0.8, "ndim": 3},
                "points",
            )
        )
    return layers


def napari_view(root: str | Path, run: str, split: str = "train", tomo_type: str = "denoised", level: int = 0):
    """Open a napari viewer on a run's tomogram and picks; returns the viewer.

    Raises:
        ImportError: napari is not installed (the message says how to install it).
    """
    try:
        import napari
    except ImportError as error:
        raise ImportError(NAPARI_INSTALL_HINT) from error
    viewer = napari.Viewer(title=f"cryokit: {run}")
    for data, kwargs, layer_type in napari_layers(root, run, split, tomo_type, level):
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    return viewer
