"""Density templates of the six particle types and of the clutter, built from soft primitives.

A template is a tuple of primitives in the particle's own frame (Angstrom, x, y, z, centred on the pick).
It is evaluated at arbitrary points, so a particle can be rendered at a continuous (sub-voxel) centre
with any rotation: ``render_template`` adds it to a volume. Shapes follow COMPETITION.md section 4:

* apo-ferritin: hollow shell, 12 nm across (catalog radius 60 A), 24 subunit bumps.
* beta-amylase: small solid tetramer, about the size of apo-ferritin, weakest contrast.
* beta-galactosidase: compact D2 tetramer of four lobes, about 18 nm.
* ribosome: large dense body of two unequal lobes (large and small subunit), about 28 nm, strongest.
* thyroglobulin: elongated dimer of two ellipsoids, 26 nm long, low contrast.
* virus-like-particle: hollow icosahedral capsid (12 pentons, 20 hexons), 27 nm, bright ring.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Union

import numpy as np
from scipy.special import expit

from cryokit.coords import angstrom_xyz_to_voxel_zyx, length_angstrom_to_voxels_zyx, voxel_zyx_to_angstrom_xyz
from cryokit.particles import check_particle_name

__all__ = [
    "Ellipsoid",
    "Shell",
    "Template",
    "particle_template",
    "vesicle_template",
    "blob_template",
    "template_extent_angstrom",
    "evaluate_template",
    "render_template",
    "N_STRUCTURAL_VARIANTS",
]

# Width (Angstrom) of the soft edge of every primitive: anti-aliases sub-voxel positions.
EDGE_ANGSTROM = 4.0


@dataclass(frozen=True)
class Ellipsoid:
    """Solid soft-edged ellipsoid: centre (x, y, z) and semi-axes along x, y, z, in Angstrom."""

    centre_xyz: tuple[float, float, float]
    semi_axes_xyz: tuple[float, float, float]
    amplitude: float = 1.0

    @property
    def extent(self) -> float:
        return float(np.linalg.norm(self.centre_xyz) + max(self.semi_axes_xyz) + 2 * EDGE_ANGSTROM)

    def __call__(self, points_xyz: np.ndarray) -> np.ndarray:
        scaled = (points_xyz - np.asarray(self.centre_xyz, np.float32)) / np.asarray(self.semi_axes_xyz, np.float32)
        distance = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        return self.amplitude * expit((1.0 - distance) * (np.mean(self.semi_axes_xyz) / EDGE_ANGSTROM))


@dataclass(frozen=True)
class Shell:
    """Hollow sphere between ``inner`` and ``outer`` radius (Angstrom) around ``centre_xyz``."""

    inner: float
    outer: float
    amplitude: float = 1.0
    centre_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def extent(self) -> float:
        return float(np.linalg.norm(self.centre_xyz) + self.outer + 2 * EDGE_ANGSTROM)

    def __call__(self, points_xyz: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(points_xyz - np.asarray(self.centre_xyz, np.float32), axis=1)
        return self.amplitude * expit((r - self.inner) / EDGE_ANGSTROM) * expit((self.outer - r) / EDGE_ANGSTROM)


Primitive = Union[Ellipsoid, Shell]
Template = tuple[Primitive, ...]


def _unit_directions(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _icosahedron_directions() -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the 12 vertices and the 20 face centres of an icosahedron."""
    phi = (1 + 5**0.5) / 2
    vertices = np.array([(0, s1, s2 * phi) for s1 in (-1, 1) for s2 in (-1, 1)], float)
    vertices = np.concatenate([np.roll(vertices, k, axis=1) for k in range(3)])
    edge = np.min([np.linalg.norm(a - b) for a in vertices for b in vertices if np.any(a != b)])
    faces = [
        (i, j, k)
        for i in range(12)
        for j in range(i + 1, 12)
        for k in range(j + 1, 12)
        if all(np.isclose(np.linalg.norm(vertices[a] - vertices[b]), edge) for a, b in ((i, j), (j, k), (i, k)))
    ]
    centres = np.array([vertices[list(f)].mean(axis=0) for f in faces])
    return _unit_directions(vertices), _unit_directions(centres)


def _octahedral_24_directions() -> np.ndarray:
    """24 directions with octahedral symmetry (the subunit positions of a ferritin cage)."""
    base = np.array([(1.0, 0.45, 0.0)])
    signs = np.array([(sx, sy, 1.0) for sx in (-1, 1) for sy in (-1, 1)])
    points = np.concatenate([np.roll(base * s, k, axis=1) for s in signs for k in range(3)])
    points = np.concatenate([points, points[:, [1, 0, 2]] * np.array([1, -1, 1])])
    return _unit_directions(points)


def _apo_ferritin() -> Template:
    bumps = tuple(Ellipsoid(tuple(54.0 * d), (9.0, 9.0, 9.0), 0.35) for d in _octahedral_24_directions())
    return (Shell(38.0, 58.0, 1.0),) + bumps


def _beta_amylase() -> Template:
    lobes = [(18, 18, 14), (-18, -18, 14), (18, -18, -14), (-18, 18, -14)]
    return tuple(Ellipsoid(c, (26.0, 24.0, 22.0), 0.6) for c in lobes)


def _beta_galactosidase() -> Template:
    lobes = [(36, 26, 8), (-36, -26, 8), (36, -26, -8), (-36, 26, -8)]
    core = (Ellipsoid((0, 0, 0), (40.0, 30.0, 26.0), 0.3),)
    return core + tuple(Ellipsoid(c, (38.0, 30.0, 34.0), 0.7) for c in lobes)


def _ribosome() -> Template:
    large = Ellipsoid((0.0, -32.0, 0.0), (112.0, 92.0, 98.0), 1.0)
    small = Ellipsoid((14.0, 84.0, 6.0), (96.0, 46.0, 64.0), 1.0)
    texture = tuple(
        Ellipsoid(c, (22.0, 22.0, 22.0), 0.35)
        for c in [(50, -40, 40), (-55, -20, -35), (10, -80, 50), (-30, -60, 60), (40, 70, -20)]
    )
    stalk = (Ellipsoid((-95.0, -40.0, 45.0), (35.0, 22.0, 22.0), 0.8),)
    return (large, small) + texture + stalk


def _thyroglobulin() -> Template:
    halves = (
        Ellipsoid((63.0, 0.0, 0.0), (68.0, 40.0, 44.0), 0.55),
        Ellipsoid((-63.0, 0.0, 0.0), (68.0, 40.0, 44.0), 0.55),
    )
    bridge = (Ellipsoid((0.0, 8.0, 0.0), (30.0, 30.0, 30.0), 0.4),)
    return halves + bridge


def _virus_like_particle() -> Template:
    vertices, faces = _icosahedron_directions()
    pentons = tuple(Ellipsoid(tuple(124.0 * d), (17.0, 17.0, 17.0), 0.9) for d in vertices)
    hexons = tuple(Ellipsoid(tuple(122.0 * d), (20.0, 20.0, 20.0), 0.7) for d in faces)
    return (Shell(104.0, 124.0, 1.2),) + pentons + hexons


# Structural variants (cryokit.synth.domains): same size and symmetry as variant 0, another subunit
# arrangement, density profile or conformation. Each builder takes a conformation in [0, 1].


def _apo_ferritin_graded(_: float) -> Template:
    """Thicker shell with a graded density profile, faint subunits (octahedral)."""
    bumps = tuple(Ellipsoid(tuple(51.0 * d), (10.0, 10.0, 10.0), 0.25) for d in _octahedral_24_directions())
    return (Shell(34.0, 47.0, 0.6), Shell(44.0, 57.0, 0.9)) + bumps


def _apo_ferritin_cage(_: float) -> Template:
    """A cage of 24 distinct subunits on a faint shell (octahedral)."""
    subunits = tuple(Ellipsoid(tuple(47.0 * d), (12.5, 12.5, 12.5), 0.9) for d in _octahedral_24_directions())
    return (Shell(40.0, 54.0, 0.3),) + subunits


def _beta_amylase_planar(_: float) -> Template:
    """Square-planar tetramer."""
    return tuple(Ellipsoid((sx * 22.0, sy * 22.0, 0.0), (24.0, 24.0, 20.0), 0.6) for sx in (-1, 1) for sy in (-1, 1))


def _beta_amylase_elongated(conformation: float) -> Template:
    """Dimer of dimers, elongated; the dimers open by up to 4 A."""
    gap = 26.0 + 4.0 * conformation
    return tuple(Ellipsoid((sx * gap, sy * 12.0, 0.0), (26.0, 22.0, 22.0), 0.6) for sx in (-1, 1) for sy in (-1, 1))


def _beta_galactosidase_planar(_: float) -> Template:
    """D2 tetramer with flatter lobes and a denser core."""
    lobes = [(40, 24, 0), (-40, -24, 0), (40, -24, 0), (-40, 24, 0)]
    core = (Ellipsoid((0, 0, 0), (44.0, 30.0, 22.0), 0.35),)
    return core + tuple(Ellipsoid(c, (36.0, 30.0, 30.0), 0.7) for c in lobes)


def _beta_galactosidase_domains(conformation: float) -> Template:
    """D2 tetramer of two-domain subunits; the domains splay by up to 6 A."""
    z = 12.0 + 6.0 * conformation
    centres = [(sx * 40.0, sy * 28.0, sz * z) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    core = (Ellipsoid((0, 0, 0), (40.0, 32.0, 28.0), 0.35),)
    return core + tuple(Ellipsoid(c, (24.0, 22.0, 24.0), 0.75) for c in centres)


def _ribosome_ratcheted(conformation: float) -> Template:
    """The small subunit rotated by -10 to +10 degrees about the inter-subunit axis (the ratchet)."""
    angle = np.radians(-10.0 + 20.0 * conformation)
    x, y = 24.0 * np.cos(angle) - 82.0 * np.sin(angle), 24.0 * np.sin(angle) + 82.0 * np.cos(angle)
    large = Ellipsoid((0.0, -30.0, 0.0), (110.0, 90.0, 96.0), 1.0)
    small = Ellipsoid((float(x), float(y), -12.0), (92.0, 46.0, 62.0), 1.0)
    texture = tuple(
        Ellipsoid(c, (24.0, 24.0, 24.0), 0.3) for c in [(-45, -50, 45), (60, -10, -40), (0, -90, -40), (30, 40, 50)]
    )
    stalk = (Ellipsoid((90.0, -30.0, -50.0), (35.0, 22.0, 22.0), 0.8),)
    return (large, small) + texture + stalk


def _ribosome_dense_core(_: float) -> Template:
    """A dense RNA core inside a lighter protein rim."""
    large = Ellipsoid((0.0, -32.0, 0.0), (112.0, 92.0, 98.0), 0.7)
    core = Ellipsoid((0.0, -32.0, 0.0), (70.0, 60.0, 62.0), 0.6)
    small = Ellipsoid((14.0, 84.0, 6.0), (96.0, 46.0, 64.0), 0.8)
    texture = tuple(Ellipsoid(c, (18.0, 18.0, 18.0), 0.4) for c in [(70, -60, 30), (-70, -50, -30), (0, 20, 80)])
    return (large, core, small) + texture


def _thyroglobulin_bent(conformation: float) -> Template:
    """A V-shaped dimer: the two arms bend by 10 to 40 degrees out of line (C2)."""
    half_angle = np.radians(5.0 + 15.0 * conformation)
    arms = []
    for side in (-1.0, 1.0):
        direction = np.array([side * np.cos(half_angle), np.sin(half_angle), 0.0])
        arms += [Ellipsoid(tuple(30.0 * direction), (40.0, 38.0, 42.0), 0.5)]
        arms += [Ellipsoid(tuple(80.0 * direction), (38.0, 36.0, 40.0), 0.55)]
    return tuple(arms)


def _thyroglobulin_four_domain(_: float) -> Template:
    """A flattened dimer of two-domain halves (C2)."""
    inner = tuple(Ellipsoid((sx * 35.0, 6.0, sz * 18.0), (40.0, 34.0, 30.0), 0.55) for sx in (-1, 1) for sz in (-1, 1))
    outer = tuple(Ellipsoid((sx * 88.0, -4.0, 0.0), (36.0, 32.0, 34.0), 0.5) for sx in (-1, 1))
    return inner + outer


def _icosahedron_edge_directions() -> np.ndarray:
    vertices, _ = _icosahedron_directions()
    dots = vertices @ vertices.T
    nearest = np.max(dots[~np.eye(12, dtype=bool)])
    pairs = [(i, j) for i in range(12) for j in range(i + 1, 12) if np.isclose(dots[i, j], nearest)]
    return _unit_directions(np.array([vertices[i] + vertices[j] for i, j in pairs]))


def _virus_like_particle_t3(_: float) -> Template:
    """A thinner capsid with 12 pentons, 20 hexons and 30 edge capsomers (icosahedral)."""
    vertices, faces = _icosahedron_directions()
    capsomers = tuple(Ellipsoid(tuple(122.0 * d), (16.0, 16.0, 16.0), 0.8) for d in vertices)
    capsomers += tuple(Ellipsoid(tuple(121.0 * d), (17.0, 17.0, 17.0), 0.7) for d in faces)
    capsomers += tuple(Ellipsoid(tuple(121.0 * d), (15.0, 15.0, 15.0), 0.6) for d in _icosahedron_edge_directions())
    return (Shell(108.0, 122.0, 1.0),) + capsomers


def _virus_like_particle_filled(_: float) -> Template:
    """A capsid with packaged cargo inside (icosahedral)."""
    vertices, faces = _icosahedron_directions()
    pentons = tuple(Ellipsoid(tuple(124.0 * d), (17.0, 17.0, 17.0), 0.8) for d in vertices)
    hexons = tuple(Ellipsoid(tuple(122.0 * d), (20.0, 20.0, 20.0), 0.6) for d in faces)
    return (Shell(100.0, 124.0, 1.1), Ellipsoid((0.0, 0.0, 0.0), (80.0, 80.0, 80.0), 0.3)) + pentons + hexons


def _fixed(builder):
    return lambda _: builder()


_BUILDERS = {
    "apo-ferritin": (_fixed(_apo_ferritin), _apo_ferritin_graded, _apo_ferritin_cage),
    "beta-amylase": (_fixed(_beta_amylase), _beta_amylase_planar, _beta_amylase_elongated),
    "beta-galactosidase": (_fixed(_beta_galactosidase), _beta_galactosidase_planar, _beta_galactosidase_domains),
    "ribosome": (_fixed(_ribosome), _ribosome_ratcheted, _ribosome_dense_core),
    "thyroglobulin": (_fixed(_thyroglobulin), _thyroglobulin_bent, _thyroglobulin_four_domain),
    "virus-like-particle": (_fixed(_virus_like_particle), _virus_like_particle_t3, _virus_like_particle_filled),
}
N_STRUCTURAL_VARIANTS = 3


@functools.lru_cache(maxsize=None)
def particle_template(name: str, variant: int = 0, conformation: float = 0.0) -> Template:
    """The density template of a particle type (particle frame, Angstrom, centred on the pick).

    Args:
        name: the particle type.
        variant: structural variant, 0 (the fixed domain's) to ``N_STRUCTURAL_VARIANTS - 1``.
        conformation: in [0, 1]; moves the parts of variants that have conformations (else ignored).
    """
    builders = _BUILDERS[check_particle_name(name)]
    if not 0 <= variant < len(builders):
        raise ValueError(f"{name}: structural variant must be in 0..{len(builders) - 1}, got {variant!r}")
    if not 0 <= conformation <= 1:
        raise ValueError(f"{name}: conformation must be in [0, 1], got {conformation!r}")
    return builders[variant](float(conformation))


def vesicle_template(radius_angstrom: float, amplitude: float = 0.8) -> Template:
    """A lipid vesicle: two thin leaflets (a bilayer about 40 A thick) at ``radius_angstrom``."""
    return (
        Shell(radius_angstrom - 20.0, radius_angstrom - 8.0, amplitude),
        Shell(radius_angstrom + 8.0, radius_angstrom + 20.0, amplitude),
    )


def blob_template(semi_axes_xyz: tuple[float, float, float], amplitude: float) -> Template:
    """A single solid ellipsoid: debris, or a gold bead when small and very dense."""
    return (Ellipsoid((0.0, 0.0, 0.0), tuple(float(a) for a in semi_axes_xyz), amplitude),)


def template_extent_angstrom(template: Template) -> float:
    """Radius (Angstrom) of the ball around the centre outside which the template is ~0."""
    return max(primitive.extent for primitive in template)


def evaluate_template(template: Template, points_xyz: np.ndarray) -> np.ndarray:
    """Density of ``template`` at (M, 3) points (particle frame, Angstrom x, y, z)."""
    points_xyz = np.asarray(points_xyz, dtype=np.float32)
    density = np.zeros(len(points_xyz), dtype=np.float32)
    for primitive in template:
        density += primitive(points_xyz)  # overlaps add up: denser cores, bumps and texture
    return density


def render_template(
    volume_zyx: np.ndarray,
    template: Template,
    centre_angstrom_xyz: np.ndarray,
    rotation_xyz: np.ndarray,
    voxel_spacing_angstrom_zyx: np.ndarray,
    scale: float = 1.0,
    amplitude: float = 1.0,
) -> None:
    """Add ``template`` to ``volume_zyx`` in place, centred at a continuous position.

    Args:
        volume_zyx: (Z, Y, X) float32 volume, modified in place.
        template: the particle-frame template.
        centre_angstrom_xyz: (3,) centre in Angstrom, x, y, z (the pick).
        rotation_xyz: (3, 3) rotation from the particle frame to the volume frame (x, y, z).
        voxel_spacing_angstrom_zyx: (3,) spacing of ``volume_zyx``.
        scale: size factor (the particle frame is stretched by it).
        amplitude: density factor.
    """
    spacing_zyx = np.asarray(voxel_spacing_angstrom_zyx, dtype=np.float64)
    centre_xyz = np.asarray(centre_angstrom_xyz, dtype=np.float64).reshape(3)
    half_extent_zyx = length_angstrom_to_voxels_zyx(template_extent_angstrom(template) * scale, spacing_zyx)
    centre_zyx = angstrom_xyz_to_voxel_zyx(centre_xyz, spacing_zyx)[0]
    low = np.maximum(np.floor(centre_zyx - half_extent_zyx).astype(int), 0)
    high = np.minimum(np.ceil(centre_zyx + half_extent_zyx).astype(int) + 1, volume_zyx.shape)
    if np.any(high <= low):
        return
    grid = np.stack(np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(low, high)], indexing="ij"), axis=-1)
    offsets_xyz = voxel_zyx_to_angstrom_xyz(grid.reshape(-1, 3), spacing_zyx) - centre_xyz
    local_xyz = (offsets_xyz @ np.asarray(rotation_xyz)) / scale  # row-vector form of R^T @ offset
    density = evaluate_template(template, local_xyz).reshape(grid.shape[:3])
    volume_zyx[low[0] : high[0], low[1] : high[1], low[2] : high[2]] += amplitude * density
