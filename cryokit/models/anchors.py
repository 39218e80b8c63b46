"""Detection anchors: the groups of classes that share one, their radii, and the anchor each class goes to.

Two groupings (``ANCHOR_GROUPINGS``, ``target.anchors``):

* ``"size_groups"``: ``ANCHOR_GROUPS`` = small (apo-ferritin 60 A, beta-amylase 65 A), medium
  (beta-galactosidase 90 A), large (thyroglobulin 130 A, virus-like particle 135 A, ribosome 150 A). Each
  anchor has its own objectness, so classes of different groups never compete at a cell: only each
  anchor's objectness tells beta-galactosidase from thyroglobulin, and on simulated runs a third to a half
  of the beta-galactosidase picks sat on thyroglobulin particles (docs/BENCHMARKS.md, "Detector experiments").
* ``"one"``: one anchor for every class; the class softmax of each positive cell then chooses among all six.

An anchor's radius is the geometric mean of its group's radii (``log(r / anchor_r)`` within +-0.08 for the
size groups, +-0.5 for one anchor). A particle goes to its class's anchor (no IoU matching).
"""

from __future__ import annotations

import numpy as np

from cryokit.coords import radius_angstrom_to_voxels
from cryokit.particles import PARTICLES, particle

__all__ = [
    "ANCHOR_GROUPS",
    "ANCHOR_GROUPINGS",
    "anchor_groups",
    "anchor_radii_angstrom",
    "anchor_radii_voxels",
    "class_anchor_indices",
]


ANCHOR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("apo-ferritin", "beta-amylase"),
    ("beta-galactosidase",),
    ("thyroglobulin", "virus-like-particle", "ribosome"),
)

ANCHOR_GROUPINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "size_groups": ANCHOR_GROUPS,
    "one": (tuple(p.name for p in PARTICLES),),
}


def anchor_groups(grouping: str = "size_groups") -> tuple[tuple[str, ...], ...]:
    """The class names that share each anchor under ``grouping`` (a key of ``ANCHOR_GROUPINGS``)."""
    if grouping not in ANCHOR_GROUPINGS:
        raise ValueError(f"anchor grouping must be one of {tuple(ANCHOR_GROUPINGS)}, got {grouping!r}")
    return ANCHOR_GROUPINGS[grouping]


def anchor_radii_angstrom(grouping: str = "size_groups") -> np.ndarray:
    """(A,) anchor radii: the geometric mean radius of each group of ``anchor_groups(grouping)``."""
    groups = anchor_groups(grouping)
    return np.array([np.exp(np.mean([np.log(particle(n).radius_angstrom) for n in g])) for g in groups])


def anchor_radii_voxels(voxel_spacing_angstrom_zyx, grouping: str = "size_groups") -> np.ndarray:
    """(A,) anchor radii in voxels at this spacing."""
    return np.array([radius_angstrom_to_voxels(r, voxel_spacing_angstrom_zyx) for r in anchor_radii_angstrom(grouping)])


def class_anchor_indices(grouping: str = "size_groups") -> np.ndarray:
    """(6,) int64 anchor index of each class index."""
    group_of = {name: a for a, group in enumerate(anchor_groups(grouping)) for name in group}
    return np.array([group_of[p.name] for p in PARTICLES], dtype=np.int64)
