"""What every figure module shares: saving a PNG atomically, and image extents in Angstrom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cryokit.coords import voxel_zyx_to_angstrom_xyz
from cryokit.io.atomic import atomic_path

__all__ = ["DPI", "save_figure", "finish", "slice_extent_angstrom"]

DPI = 110


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG atomically (creating the folder) and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def finish(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` as PNG at ``path`` when given; return it (every plot function ends with this)."""
    if path is not None:
        save_figure(fig, path)
    return fig


def slice_extent_angstrom(shape_zyx, spacing_zyx, horizontal: int, vertical: int) -> list[float]:
    """imshow extent (Angstrom, voxel edges) of a slice whose axes are ``horizontal`` and ``vertical``
    (zyx indices), through ``cryokit.coords``."""
    corners = voxel_zyx_to_angstrom_xyz(np.array([[-0.5] * 3, np.asarray(shape_zyx) - 0.5]), spacing_zyx)
    h, v = 2 - horizontal, 2 - vertical  # zyx index -> xyz column
    return [corners[0, h], corners[1, h], corners[1, v], corners[0, v]]
