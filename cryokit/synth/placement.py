"""Where things go: the ice slab, then (randomized runs) membranes and a carbon edge, then vesicles,
particles, gold beads and debris, without overlaps.

Objects are placed one at a time by rejection sampling (batches of candidates tested at once). Solid
objects keep their centres at least ``min_separation_factor * (r1 + r2)`` apart; nothing may touch a
vesicle's membrane. Particle centres lie inside the ice slab with their whole catalog radius.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from cryokit.coords import length_angstrom_to_voxels_zyx, voxel_zyx_to_angstrom_xyz, voxels_to_angstrom
from cryokit.particles import PARTICLE_NAMES, particle
from cryokit.synth.clutter import CarbonEdge, Membrane, draw_carbon_edge, draw_membrane
from cryokit.synth.config import SimulationConfig
from cryokit.synth.domains import N_CONFORMATIONS, DomainParameters
from cryokit.synth.shapes import Template, blob_template, particle_template, vesicle_template

__all__ = ["IceSlab", "PlacedObject", "Scene", "place_scene", "sample_counts"]

log = logging.getLogger(__name__)

_MEMBRANE_HALF_THICKNESS_ANGSTROM = 25.0
_GOLD_RADIUS_ANGSTROM = 50.0
_BATCH = 64
_MAX_BATCHES = 40


@dataclass(frozen=True)
class IceSlab:
    """A slab of ice with tilted faces and a thickness gradient, in level-0 voxel units.

    The mid-surface is ``z = z_mid + slope_y * (y - cy) + slope_x * (x - cx)``; the thickness grows
    linearly from ``thickness_lo`` to ``thickness_hi`` along ``gradient_yx``.
    """

    shape_zyx: tuple[int, int, int]
    z_mid: float
    slope_yx: tuple[float, float]
    thickness_lo: float
    thickness_hi: float
    gradient_yx: tuple[float, float]

    def bounds(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bottom, top) z of the ice at voxel positions y, x (broadcast)."""
        _, size_y, size_x = self.shape_zyx
        dy, dx = y - (size_y - 1) / 2, x - (size_x - 1) / 2
        mid = self.z_mid + self.slope_yx[0] * dy + self.slope_yx[1] * dx
        reach = (abs(self.gradient_yx[0]) * (size_y - 1) + abs(self.gradient_yx[1]) * (size_x - 1)) / 2 or 1.0
        fraction = 0.5 + (self.gradient_yx[0] * dy + self.gradient_yx[1] * dx) / (2 * reach)
        half = (self.thickness_lo + (self.thickness_hi - self.thickness_lo) * fraction) / 2
        return mid - half, mid + half

    def mask(self, edge_voxels: float = 2.0) -> np.ndarray:
        """(Z, Y, X) float32 indicator of the ice, ramping linearly over ``edge_voxels`` at each face."""
        size_z, size_y, size_x = self.shape_zyx
        bottom, top = self.bounds(
            np.arange(size_y, dtype=np.float32)[:, None], np.arange(size_x, dtype=np.float32)[None, :]
        )
        z = np.arange(size_z, dtype=np.float32)[:, None, None]
        inside = np.minimum(z - bottom[None], top[None] - z)
        inside /= np.float32(edge_voxels)
        inside += np.float32(0.5)
        return np.clip(inside, 0, 1, out=inside)


@dataclass(frozen=True)
class PlacedObject:
    """One rendered object: a particle (``kind`` is its name) or clutter (vesicle, gold, debris)."""

    kind: str
    centre_angstrom_xyz: np.ndarray
    radius_angstrom: float
    rotation_xyz: np.ndarray
    scale: float
    amplitude: float
    template: Template

    @property
    def is_particle(self) -> bool:
        return self.kind in PARTICLE_NAMES


@dataclass(frozen=True)
class Scene:
    """Everything placed in one run (membranes and carbon only in randomized runs)."""

    slab: IceSlab
    objects: tuple[PlacedObject, ...]
    membranes: tuple[Membrane, ...] = ()
    carbon: CarbonEdge | None = None

    def picks(self) -> dict[str, np.ndarray]:
        """``{particle: centres_angstrom_xyz (N, 3)}`` for all six types (empty arrays included)."""
        return {
            name: np.array([o.centre_angstrom_xyz for o in self.objects if o.kind == name], dtype=np.float64).reshape(
                -1, 3
            )
            for name in PARTICLE_NAMES
        }


def _stochastic_round(value: float, rng: np.random.Generator) -> int:
    base = int(np.floor(value))
    return base + int(rng.random() < value - base)


def sample_counts(config: SimulationConfig, rng: np.random.Generator) -> dict[str, int]:
    """Particles of each type for one run: uniform in the range, times crowding and volume factor."""
    counts = {}
    for name, lo, hi in config.counts:
        drawn = rng.integers(lo, hi + 1)
        counts[name] = _stochastic_round(drawn * config.crowding * config.volume_factor, rng)
    return counts


def _random_slab(config: SimulationConfig, rng: np.random.Generator) -> IceSlab:
    size_z, size_y, size_x = config.shape_zyx
    lo, hi = (f * size_z for f in config.ice_thickness_fraction)
    angle = rng.uniform(0, 2 * np.pi)
    spare = max(size_z - 1 - hi, 0.0) / 2  # how far the mid-surface may wander up or down
    slope_y, slope_x = rng.uniform(-1, 1, 2) * 0.5 * spare / np.array([max(size_y, 1), max(size_x, 1)])
    return IceSlab(
        config.shape_zyx,
        (size_z - 1) / 2 + rng.uniform(-0.3, 0.3) * spare,
        (slope_y, slope_x),
        lo,
        hi,
        (float(np.sin(angle)), float(np.cos(angle))),
    )


class _Placer:
    """Rejection sampler that remembers what is placed (centres in Angstrom x, y, z)."""

    def __init__(self, config: SimulationConfig, slab: IceSlab, rng: np.random.Generator):
        self.config, self.slab, self.rng = config, slab, rng
        self.spacing_zyx = np.asarray(config.voxel_spacing_angstrom_zyx)
        self.solid_xyz, self.solid_radius = np.empty((0, 3)), np.empty(0)
        self.vesicle_xyz, self.vesicle_radius = np.empty((0, 3)), np.empty(0)
        self.carbon: CarbonEdge | None = None

    def add_membrane(self, membrane: Membrane) -> None:
        """Keep everything placed later off ``membrane`` (as off a vesicle's)."""
        self.vesicle_xyz = np.vstack([self.vesicle_xyz, membrane.centre_angstrom_xyz])
        self.vesicle_radius = np.append(self.vesicle_radius, membrane.radius_angstrom)

    def _candidates(self, radius_angstrom: float, lateral_margin: float) -> np.ndarray:
        """(B, 3) Angstrom x, y, z candidates whose ball of ``radius_angstrom`` lies inside the ice."""
        size_z, size_y, size_x = self.config.shape_zyx
        radius_voxels = length_angstrom_to_voxels_zyx(radius_angstrom, self.spacing_zyx)
        y = self.rng.uniform(lateral_margin * radius_voxels[1], size_y - 1 - lateral_margin * radius_voxels[1], _BATCH)
        x = self.rng.uniform(lateral_margin * radius_voxels[2], size_x - 1 - lateral_margin * radius_voxels[2], _BATCH)
        bottom, top = self.slab.bounds(y, x)
        z = self.rng.uniform(bottom + radius_voxels[0], top - radius_voxels[0])
        keep = (top - bottom > 2 * radius_voxels[0]) & (z >= 0) & (z <= size_z - 1)
        if self.carbon is not None:
            keep &= self.carbon.signed_distance(y, x) < -radius_voxels[1:].max()
        return voxel_zyx_to_angstrom_xyz(np.stack([z, y, x], axis=1)[keep], self.spacing_zyx)

    def _free(self, candidates_angstrom_xyz: np.ndarray, radius_angstrom: float, vesicle: bool) -> np.ndarray:
        """Boolean (B,): which candidates keep clear of everything placed so far."""
        ok = np.ones(len(candidates_angstrom_xyz), dtype=bool)
        if len(self.solid_xyz):
            distance = np.linalg.norm(candidates_angstrom_xyz[:, None] - self.solid_xyz[None], axis=2)
            ok &= np.all(distance >= self.config.min_separation_factor * (radius_angstrom + self.solid_radius), axis=1)
        if len(self.vesicle_xyz):
            distance = np.linalg.norm(candidates_angstrom_xyz[:, None] - self.vesicle_xyz[None], axis=2)
            if vesicle:
                ok &= np.all(
                    distance >= radius_angstrom + self.vesicle_radius + 2 * _MEMBRANE_HALF_THICKNESS_ANGSTROM, axis=1
                )
            else:
                ok &= np.all(
                    np.abs(distance - self.vesicle_radius) >= radius_angstrom + _MEMBRANE_HALF_THICKNESS_ANGSTROM,
                    axis=1,
                )
        return ok

    def place(self, radius_angstrom: float, vesicle: bool = False, lateral_margin: float = 0.5) -> np.ndarray | None:
        """A free centre (Angstrom x, y, z) for a ball of ``radius_angstrom``, or None if none was found.

        A vesicle's ``radius_angstrom`` is its membrane's; its ball, membrane included, must be in the ice.
        """
        inside_radius = radius_angstrom + (_MEMBRANE_HALF_THICKNESS_ANGSTROM if vesicle else 0.0)
        for _ in range(_MAX_BATCHES):
            candidates = self._candidates(inside_radius, lateral_margin)
            free = np.flatnonzero(self._free(candidates, radius_angstrom, vesicle))
            if len(free):
                centre = candidates[free[0]]
                if vesicle:
                    self.vesicle_xyz = np.vstack([self.vesicle_xyz, centre])
                    self.vesicle_radius = np.append(self.vesicle_radius, radius_angstrom)
                else:
                    self.solid_xyz = np.vstack([self.solid_xyz, centre])
                    self.solid_radius = np.append(self.solid_radius, radius_angstrom)
                return centre
        return None


def _clutter_count(config: SimulationConfig, value_range: tuple[int, int], rng: np.random.Generator) -> int:
    return _stochastic_round(rng.uniform(*value_range) * config.clutter * config.volume_factor, rng)


def _place_vesicles(placer: _Placer, config: SimulationConfig, rng: np.random.Generator) -> list[PlacedObject]:
    objects = []
    max_radius = (
        voxels_to_angstrom(placer.slab.thickness_lo, placer.spacing_zyx) / 2 - 2 * _MEMBRANE_HALF_THICKNESS_ANGSTROM
    )
    for _ in range(_clutter_count(config, config.n_vesicles, rng)):
        radius = min(rng.uniform(*config.vesicle_radius_angstrom), max_radius)
        if radius < 100.0:
            break
        # A vesicle's ball must lie in the ice and may reach over the x-y border.
        centre = placer.place(radius, vesicle=True, lateral_margin=0.0)
        if centre is not None:
            objects.append(
                PlacedObject("vesicle", centre, radius, np.eye(3), 1.0, rng.uniform(0.6, 1.0), vesicle_template(radius))
            )
    return objects


def _place_particles(
    placer: _Placer, counts: dict[str, int], rng: np.random.Generator, variants: dict[str, int] | None = None
) -> list[PlacedObject]:
    """Particles, largest first; with ``variants`` (randomized runs) each draws a conformation."""
    objects = []
    for name in sorted(counts, key=lambda n: -particle(n).radius_angstrom):
        radius = particle(name).radius_angstrom
        for i in range(counts[name]):
            centre = placer.place(radius)
            if centre is None:
                raise ValueError(
                    f"could not place {name} {i + 1} of {counts[name]} without overlaps in shape_zyx "
                    f"{placer.config.shape_zyx}: lower counts or crowding, or enlarge the shape"
                )
            rotation = Rotation.random(random_state=rng).as_matrix()
            scale, amplitude = rng.uniform(0.96, 1.04), rng.uniform(0.85, 1.15)
            if variants is None:
                template = particle_template(name)
            else:
                conformation = rng.integers(N_CONFORMATIONS) / (N_CONFORMATIONS - 1)
                template = particle_template(name, variants[name], conformation)
            objects.append(PlacedObject(name, centre, radius, rotation, scale, amplitude, template))
    return objects


def _place_small_clutter(placer: _Placer, config: SimulationConfig, rng: np.random.Generator) -> list[PlacedObject]:
    objects = []
    for _ in range(_clutter_count(config, config.n_gold, rng)):
        centre = placer.place(_GOLD_RADIUS_ANGSTROM)
        if centre is not None:
            objects.append(
                PlacedObject(
                    "gold",
                    centre,
                    _GOLD_RADIUS_ANGSTROM,
                    np.eye(3),
                    1.0,
                    rng.uniform(5.0, 7.0),
                    blob_template((_GOLD_RADIUS_ANGSTROM,) * 3, 1.0),
                )
            )
    low, high = np.log(config.debris_radius_angstrom)
    for _ in range(_clutter_count(config, config.n_debris, rng)):
        radius = float(np.exp(rng.uniform(low, high)))
        semi_axes = radius * rng.uniform(1 / 1.4, 1.0, 3)
        semi_axes[rng.integers(3)] = radius  # the longest axis is the drawn radius
        centre = placer.place(radius)
        if centre is not None:
            rotation = Rotation.random(random_state=rng).as_matrix()
            objects.append(
                PlacedObject(
                    "debris",
                    centre,
                    radius,
                    rotation,
                    1.0,
                    rng.uniform(*config.debris_contrast),
                    blob_template(tuple(semi_axes), 1.0),
                )
            )
    return objects


def _place_large_clutter(
    placer: _Placer, config: SimulationConfig, domain: DomainParameters, rng: np.random.Generator
) -> tuple[tuple[Membrane, ...], CarbonEdge | None]:
    """Membranes through random points of the ice and the carbon edge, as the domain draw asks."""
    membranes = []
    if "membrane" in domain.clutter_kinds:
        for _ in range(_stochastic_round(domain.n_membranes * config.clutter, rng)):
            point = placer._candidates(0.0, 0.0)[:1]
            if len(point):
                membranes.append(draw_membrane(point[0], rng))
                placer.add_membrane(membranes[-1])
    if "carbon" in domain.clutter_kinds and domain.carbon_fraction > 0:
        placer.carbon = draw_carbon_edge(config.shape_zyx, domain.carbon_fraction, placer.spacing_zyx, rng)
    return tuple(membranes), placer.carbon


def place_scene(config: SimulationConfig, rng: np.random.Generator, domain: DomainParameters | None = None) -> Scene:
    """Draw the ice slab and place vesicles, particles, gold beads and debris for one run.

    ``domain`` (randomized runs) adds membranes and a carbon edge when drawn and gives each particle type
    its structural variant; ``config`` then already holds the domain's other values.
    """
    slab = _random_slab(config, rng)
    placer = _Placer(config, slab, rng)
    counts = sample_counts(config, rng)
    membranes, carbon = _place_large_clutter(placer, config, domain, rng) if domain is not None else ((), None)
    objects = _place_vesicles(placer, config, rng)
    objects += _place_particles(placer, counts, rng, None if domain is None else domain.variant_of)
    objects += _place_small_clutter(placer, config, rng)
    log.debug("placed %s", {kind: sum(o.kind == kind for o in objects) for kind in {o.kind for o in objects}})
    return Scene(slab, tuple(objects), membranes, carbon)
