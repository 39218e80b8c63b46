"""Detection anchors: one per size group of the catalog, and the anchor each class goes to.

``ANCHOR_GROUPS`` = small (apo-ferritin 60 A, beta-amylase 65 A), medium (beta-galactosidase 90 A), large
(thyroglobulin 130 A, virus-like particle 135 A, ribosome 150 A). An anchor's radius is the geometric
mean of its group's radii, which keeps every ``log(r / anchor_r)`` within +-0.08. A particle goes to its
class's anchor (no IoU matching).
"""

from __future__ import annotations

import numpy as np

from cryokit.coords import radius_angstrom_to_voxels
from cryokit.particles import PARTICLES, particle

__all__ = ["ANCHOR_GROUPS", "anchor_radii_angstrom", "anchor_radii_voxels", "class_anchor_indices"]


ANCHOR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("apo-ferritin", "beta-amylase"),
    ("beta-galactosidase",),
    ("thyroglobulin", "virus-like-particle", "ribosome"),
)


def anchor_radii_angstrom() -> np.ndarray:
    """(A,) anchor radii: the geometric mean radius of each of ``ANCHOR_GROUPS``."""
    return np.array([np.exp(np.mean([np.log(particle(n).radius_angstrom) for n in g])) for g in ANCHOR_GROUPS])


def anchor_radii_voxels(voxel_spacing_angstrom_zyx) -> np.ndarray:
    """(A,) anchor radii in voxels at this spacing."""
    return np.array([radius_angstrom_to_voxels(r, voxel_spacing_angstrom_zyx) for r in anchor_radii_angstrom()])


def class_anchor_indices() -> np.ndarray:
    """(6,) int64 anchor index of each class index."""
    group_of = {name: a for a, group in enumerate(ANCHOR_GROUPS) for name in group}
    return np.array([group_of[p.name] for p in PARTICLES], dtype=np.int64)
