"""The particle catalog: the one source of truth for the six particle types.

Values are the competition's (COMPETITION.md sections 1.1 and 2.3): radius in Angstrom, score weight,
copick label and colour, PDB id and map threshold. Everything else in cryokit reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Particle",
    "PARTICLES",
    "PARTICLE_NAMES",
    "SCORED_PARTICLE_NAMES",
    "TOTAL_WEIGHT",
    "particle",
    "check_particle_name",
]


@dataclass(frozen=True)
class Particle:
    """One pickable particle type.

    Attributes:
        name: the competition's name, e.g. ``"apo-ferritin"`` (also the picks file stem).
        radius_angstrom: the competition radius; the match radius is half of it.
        weight: weight in the competition's F-beta (0 for beta-amylase).
        label: copick label id (1..6); segmentation channel index in cryokit models.
        color_rgba: copick display colour, 0..255 per channel.
        pdb_id: copick ``pdb_id`` (None for the virus-like particle).
        map_threshold: copick ``map_threshold``.
        difficulty: the host's wording ("easy", "hard", "impossible").
    """

    name: str
    radius_angstrom: float
    weight: int
    label: int
    color_rgba: tuple[int, int, int, int]
    pdb_id: str | None
    map_threshold: float
    difficulty: str

    @property
    def scored(self) -> bool:
        return self.weight > 0

    @property
    def match_radius_angstrom(self) -> float:
        """Radius within which a candidate matches a reference (distance_multiplier 0.5)."""
        return 0.5 * self.radius_angstrom

    @property
    def color_float(self) -> tuple[float, float, float]:
        """Opaque RGB in 0..1 for matplotlib."""
        return tuple(c / 255.0 for c in self.color_rgba[:3])  # type: ignore[return-value]

    def copick_object(self) -> dict:
        """The pickable-object entry of a copick config (COMPETITION.md 2.3)."""
        entry = {
            "name": self.name,
            "is_particle": True,
            "label": self.label,
            "color": list(self.color_rgba),
            "radius": self.radius_angstrom,
            "map_threshold": self.map_threshold,
        }
        if self.pdb_id is not None:
            entry["pdb_id"] = self.pdb_id
        return entry


PARTICLES: tuple[Particle, ...] = (
    Particle("apo-ferritin", 60.0, 1, 1, (0, 117, 220, 128), "4V1W", 0.0418, "easy"),
    Particle("beta-amylase", 65.0, 0, 2, (153, 63, 0, 128), "1FA2", 0.035, "impossible"),
    Particle("beta-galactosidase", 90.0, 2, 3, (76, 0, 92, 128), "6X1Q", 0.0578, "hard"),
    Particle("ribosome", 150.0, 1, 4, (0, 92, 49, 128), "6EK0", 0.0374, "easy"),
    Particle("thyroglobulin", 130.0, 2, 5, (43, 206, 72, 128), "6SCJ", 0.0278, "hard"),
    Particle("virus-like-particle", 135.0, 1, 6, (255, 204, 153, 128), None, 0.201, "easy"),
)

PARTICLE_NAMES: tuple[str, ...] = tuple(p.name for p in PARTICLES)
SCORED_PARTICLE_NAMES: tuple[str, ...] = tuple(p.name for p in PARTICLES if p.scored)
# The metric divides by the weight of all six types, present or not (COMPETITION.md 1.4).
TOTAL_WEIGHT: int = sum(p.weight for p in PARTICLES)

_BY_NAME = {p.name: p for p in PARTICLES}

# Non-particle objects in the host's copick config (membrane, background).
COPICK_NON_PARTICLES: tuple[dict, ...] = (
    {"name": "membrane", "is_particle": False, "label": 8, "color": [100, 100, 100, 128]},
    {"name": "background", "is_particle": False, "label": 9, "color": [10, 150, 200, 128]},
)


def check_particle_name(name: str, where: str = "") -> str:
    """Return ``name`` if it is one of the six types, else raise a ValueError naming ``where``."""
    if name not in _BY_NAME:
        place = f" in {where}" if where else ""
        raise ValueError(f"unknown particle type {name!r}{place}; expected one of {', '.join(PARTICLE_NAMES)}")
    return name


def particle(name: str) -> Particle:
    """Look up a particle by its competition name."""
    return _BY_NAME[check_particle_name(name)]
