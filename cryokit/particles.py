"""The particle catalog: which objects a project picks, with radius, label, colour and score weight.

``COMPETITION_CATALOG`` holds the competition's six (COMPETITION.md sections 1.1 and 2.3): radius in
Angstrom, score weight, copick label and colour, PDB id and map threshold. It is the default everywhere.
A copick project brings its own catalog (``ParticleCatalog.from_copick``): its pickable particles, in
label order, with weights from ``metadata.score_weight`` (TopCUP) or ``metadata.weight`` (octopi), the
competition's weight for the competition's names, else 1. Targets, model channels, decoding, the metric,
thresholds and plots take a catalog explicitly; class index ``k`` is ``catalog.particles[k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

__all__ = [
    "Particle",
    "PARTICLES",
    "PARTICLE_NAMES",
    "SCORED_PARTICLE_NAMES",
    "TOTAL_WEIGHT",
    "particle",
    "check_particle_name",
    "ParticleCatalog",
    "COMPETITION_CATALOG",
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
    weight: float
    label: int
    color_rgba: tuple[int, int, int, int]
    pdb_id: str | None = None
    map_threshold: float | None = None
    difficulty: str = ""

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
        }
        if self.map_threshold is not None:
            entry["map_threshold"] = self.map_threshold
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


_RECORD_FIELDS = ("name", "radius_angstrom", "weight", "label", "color_rgba", "pdb_id", "map_threshold", "difficulty")


@dataclass(frozen=True)
class ParticleCatalog:
    """The pickable particles of a project, in class-index order (``particles[k]`` is class ``k``).

    Attributes:
        particles: one ``Particle`` per class; names unique, radii positive, weights >= 0.
        source: where the catalog came from, for messages (a copick config, "competition").
    """

    particles: tuple[Particle, ...]
    source: str = "competition"

    def __post_init__(self) -> None:
        object.__setattr__(self, "particles", tuple(self.particles))
        if not self.particles:
            raise ValueError(f"particle catalog from {self.source} holds no pickable particles")
        names = [p.name for p in self.particles]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"particle catalog from {self.source} names {doubled} more than once")
        for p in self.particles:
            if not p.radius_angstrom > 0:
                raise ValueError(f"particle {p.name!r} in {self.source} has radius {p.radius_angstrom}; need > 0 A")
            if not p.weight >= 0:
                raise ValueError(f"particle {p.name!r} in {self.source} has score weight {p.weight}; need >= 0")

    def __len__(self) -> int:
        return len(self.particles)

    def __iter__(self) -> Iterator[Particle]:
        return iter(self.particles)

    def __eq__(self, other: object) -> bool:  # the source is only a label
        return isinstance(other, ParticleCatalog) and self.particles == other.particles

    def __hash__(self) -> int:
        return hash(self.particles)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.particles)

    @property
    def scored_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.particles if p.scored)

    @property
    def total_weight(self) -> float:
        """The metric's denominator: the weight of every type, present or not (COMPETITION.md 1.4)."""
        return sum(p.weight for p in self.particles)

    def check(self, name: str, where: str = "") -> str:
        """Return ``name`` if the catalog holds it, else raise a ValueError naming ``where``."""
        if name not in self.names:
            place = f" in {where}" if where else ""
            raise ValueError(
                f"unknown particle type {name!r}{place}; the catalog ({self.source}) holds {', '.join(self.names)}"
            )
        return name

    def get(self, name: str) -> Particle:
        return self.particles[self.index(name)]

    def index(self, name: str) -> int:
        """Class index of ``name``."""
        return self.names.index(self.check(name))

    def to_records(self) -> list[dict[str, Any]]:
        """Plain values (for checkpoints and manifests: data, never pickled objects)."""
        return [
            {f: (list(getattr(p, f)) if f == "color_rgba" else getattr(p, f)) for f in _RECORD_FIELDS}
            for p in self.particles
        ]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]], source: str = "checkpoint") -> ParticleCatalog:
        particles = []
        for i, record in enumerate(records):
            missing = [f for f in ("name", "radius_angstrom", "weight", "label") if f not in record]
            if missing:
                raise ValueError(f"particle {i} of the catalog in {source} lacks {missing}")
            values = {f: record[f] for f in _RECORD_FIELDS if f in record}
            values["color_rgba"] = tuple(int(c) for c in values.get("color_rgba") or (128, 128, 128, 128))
            particles.append(
                Particle(
                    **{
                        **values,
                        "name": str(values["name"]),
                        "radius_angstrom": float(values["radius_angstrom"]),
                        "weight": float(values["weight"]),
                        "label": int(values["label"]),
                    }
                )
            )
        return cls(tuple(particles), source)

    @classmethod
    def from_copick(cls, root: Any, source: str = "copick project") -> ParticleCatalog:
        """The pickable particles of a copick root (``copick.from_file(...)``), in label order."""
        particles = []
        for obj in root.pickable_objects:
            if not obj.is_particle:
                continue
            if obj.radius is None:
                raise ValueError(f"pickable object {obj.name!r} in {source} has no radius; cryokit needs one")
            particles.append(
                Particle(
                    obj.name,
                    float(obj.radius),
                    _copick_weight(obj, source),
                    int(obj.label),
                    _rgba(obj.color),
                    getattr(obj, "pdb_id", None),
                    getattr(obj, "map_threshold", None),
                    _BY_NAME[obj.name].difficulty if obj.name in _BY_NAME else "",
                )
            )
        return cls(tuple(sorted(particles, key=lambda p: p.label)), source)

    def differences(self, other: ParticleCatalog) -> str:
        """What differs from ``other`` in words ("" when the names are the same, in the same order)."""
        if self.names == other.names:
            return ""
        only_here = [n for n in self.names if n not in other.names]
        only_there = [n for n in other.names if n not in self.names]
        if not only_here and not only_there:
            return f"same objects in another order ({', '.join(self.names)} vs {', '.join(other.names)})"
        return f"only in {self.source}: {only_here or 'none'}; only in {other.source}: {only_there or 'none'}"


def _copick_weight(obj: Any, source: str) -> float:
    metadata = getattr(obj, "metadata", None) or {}
    for key in ("score_weight", "weight"):
        if metadata.get(key) is not None:
            try:
                return float(metadata[key])
            except (TypeError, ValueError):
                raise ValueError(
                    f"pickable object {obj.name!r} in {source}: metadata.{key}={metadata[key]!r} is not a number"
                ) from None
    return float(_BY_NAME[obj.name].weight) if obj.name in _BY_NAME else 1.0


def _rgba(color: Any) -> tuple[int, int, int, int]:
    values = [int(c) for c in (color or (128, 128, 128, 128))]
    return tuple((values + [255])[:4])  # type: ignore[return-value]


COMPETITION_CATALOG = ParticleCatalog(PARTICLES, "competition")
