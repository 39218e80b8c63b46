"""Clutter larger than a particle's box, for randomized runs: membranes and the edge of the carbon film.

Both cross the whole volume, so they are rendered slice by slice (z) on the full grid instead of in a
template's bounding box, and only inside the ice. A membrane is a bilayer on a sphere much larger
than the volume (an arc of a cell or a large vesicle); the carbon film, 100 to 300 A thick, lies
along the ice's mid-surface beyond a straight edge in the x-y plane. Particles keep clear of both
(``cryokit.synth.placement``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from cryokit.coords import voxel_zyx_to_angstrom_xyz

__all__ = ["Membrane", "CarbonEdge", "draw_membrane", "draw_carbon_edge", "render_large_clutter"]

MEMBRANE_RADIUS_ANGSTROM = (1500.0, 6000.0)
CARBON_THICKNESS_ANGSTROM = (100.0, 300.0)
_LEAFLETS_ANGSTROM = ((-20.0, -8.0), (8.0, 20.0))  # a bilayer about 40 A thick, as a vesicle's
_EDGE_ANGSTROM = 4.0
_CARBON_EDGE_VOXELS = 1.5


@dataclass(frozen=True)
class Membrane:
    """A bilayer on the sphere of ``radius_angstrom`` around ``centre_angstrom_xyz`` (outside the volume)."""

    centre_angstrom_xyz: np.ndarray
    radius_angstrom: float
    amplitude: float


@dataclass(frozen=True)
class CarbonEdge:
    """A carbon film where ``normal_yx . (y, x) > offset_voxels`` (level-0 voxels), of density ``amplitude``,
    ``thickness_voxels`` thick about the ice's mid-surface."""

    normal_yx: tuple[float, float]
    offset_voxels: float
    amplitude: float
    thickness_voxels: float = 20.0

    def signed_distance(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Voxels into the carbon (negative outside it) at voxel positions y, x."""
        return self.normal_yx[0] * y + self.normal_yx[1] * x - self.offset_voxels


def draw_membrane(point_angstrom_xyz: np.ndarray, rng: np.random.Generator) -> Membrane:
    """A membrane through ``point_angstrom_xyz`` with a random large radius and a mostly lateral normal."""
    radius = float(rng.uniform(*MEMBRANE_RADIUS_ANGSTROM))
    normal = rng.normal(size=3)
    normal[2] *= 0.3  # membranes in a thin ice slab mostly stand across it
    normal /= np.linalg.norm(normal)
    return Membrane(np.asarray(point_angstrom_xyz, float) + radius * normal, radius, float(rng.uniform(0.6, 1.0)))


def draw_carbon_edge(
    shape_zyx: tuple[int, int, int], fraction: float, voxel_spacing_angstrom_zyx, rng: np.random.Generator
) -> CarbonEdge:
    """A straight carbon edge at a random angle, the carbon covering ``fraction`` of the x-y extent."""
    angle = rng.uniform(0, 2 * np.pi)
    normal = (float(np.sin(angle)), float(np.cos(angle)))
    corners = np.array([(y, x) for y in (0, shape_zyx[1] - 1) for x in (0, shape_zyx[2] - 1)], float)
    projection = corners @ np.asarray(normal)
    offset = projection.max() - fraction * (projection.max() - projection.min())
    thickness = rng.uniform(*CARBON_THICKNESS_ANGSTROM) / float(voxel_spacing_angstrom_zyx[0])
    return CarbonEdge(normal, float(offset), float(rng.uniform(0.4, 0.9)), float(thickness))


def render_large_clutter(
    density_zyx: np.ndarray,
    ice_mask_zyx: np.ndarray,
    mid_surface_z: np.ndarray,
    membranes: tuple[Membrane, ...],
    carbon: CarbonEdge | None,
    voxel_spacing_angstrom_zyx,
) -> None:
    """Add membranes and carbon to ``density_zyx`` in place, inside the ice (``ice_mask_zyx``, 0 to 1);
    ``mid_surface_z`` (Y, X) is the z of the ice's mid-surface, where the carbon film lies."""
    if not membranes and carbon is None:
        return
    size_z, size_y, size_x = density_zyx.shape
    y, x = np.meshgrid(np.arange(size_y, dtype=np.float32), np.arange(size_x, dtype=np.float32), indexing="ij")
    carbon_yx = None
    if carbon is not None:
        carbon_yx = np.float32(carbon.amplitude) * expit(carbon.signed_distance(y, x) / _CARBON_EDGE_VOXELS)
    plane_zyx = np.stack([np.zeros_like(y), y, x], axis=-1).reshape(-1, 3)
    for z in range(size_z):
        added = np.zeros((size_y, size_x), np.float32)
        if carbon_yx is not None:
            depth = carbon.thickness_voxels / 2 - np.abs(z - mid_surface_z)
            added += carbon_yx * expit(depth / _CARBON_EDGE_VOXELS).astype(np.float32)
        if membranes:
            plane_zyx[:, 0] = z
            points_xyz = voxel_zyx_to_angstrom_xyz(plane_zyx, voxel_spacing_angstrom_zyx).astype(np.float32)
            for membrane in membranes:
                offset = np.linalg.norm(points_xyz - membrane.centre_angstrom_xyz.astype(np.float32), axis=1)
                offset -= np.float32(membrane.radius_angstrom)
                for inner, outer in _LEAFLETS_ANGSTROM:
                    leaflet = expit((offset - inner) / _EDGE_ANGSTROM) * expit((outer - offset) / _EDGE_ANGSTROM)
                    added += np.float32(membrane.amplitude) * leaflet.reshape(size_y, size_x).astype(np.float32)
        density_zyx[z] += added * ice_mask_zyx[z]
