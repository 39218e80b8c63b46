"""Every knob of the simulator in one frozen dataclass, and the ``difficulty`` presets.

``difficulty`` moves the signal-to-noise ratio, the crowding (particle counts) and the clutter together;
any of the three given explicitly overrides the preset. Counts are per run of the reference size
(184 x 630 x 630 voxels, the competition's level 0) and, by default, scale with the volume requested.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Mapping, Union

from cryokit.coords import radius_angstrom_to_voxels
from cryokit.io.layout import TOMO_TYPES
from cryokit.particles import PARTICLE_NAMES, particle
from cryokit.synth.domains import DomainRanges

__all__ = [
    "DOMAINS",
    "REFERENCE_SHAPE_ZYX",
    "REFERENCE_SPACING_ANGSTROM_ZYX",
    "DEFAULT_COUNTS",
    "DIFFICULTY_PRESETS",
    "SimulationConfig",
    "config_for_difficulty",
]

REFERENCE_SHAPE_ZYX: tuple[int, int, int] = (184, 630, 630)
# The real level-0 scale (COMPETITION.md 2.1): x differs from y and z in the 7th digit.
REFERENCE_SPACING_ANGSTROM_ZYX: tuple[float, float, float] = (
    10.012444196428572,
    10.012444196428572,
    10.012444537618887,
)
# (min, max) particles per reference-size run, like the real training runs.
DEFAULT_COUNTS: dict[str, tuple[int, int]] = {
    "apo-ferritin": (40, 60),
    "beta-amylase": (10, 15),
    "beta-galactosidase": (10, 20),
    "ribosome": (30, 60),
    "thyroglobulin": (20, 40),
    "virus-like-particle": (10, 20),
}
# snr: signal power inside particles over white-noise power; crowding and clutter multiply the counts.
DIFFICULTY_PRESETS: dict[str, dict[str, float]] = {
    "easy": {"snr": 0.3, "crowding": 0.7, "clutter": 0.4},
    "default": {"snr": 0.1, "crowding": 1.0, "clutter": 1.0},
    "hard": {"snr": 0.05, "crowding": 1.3, "clutter": 1.5},
}

# fixed: every knob as set here (the simulator before domains); randomized: drawn per run from domain_ranges.
DOMAINS: tuple[str, ...] = ("fixed", "randomized")

CountsLike = Mapping[str, Union[int, tuple[int, int]]]


def _normalise_counts(counts: CountsLike | tuple) -> tuple[tuple[str, int, int], ...]:
    """Merge ``counts`` into the defaults; return ``((name, min, max), ...)`` in catalog order."""
    given = dict((name, (lo, hi)) for name, lo, hi in counts) if isinstance(counts, tuple) else dict(counts)
    merged = dict(DEFAULT_COUNTS)
    for name, value in given.items():
        if name not in DEFAULT_COUNTS:
            raise ValueError(f"counts: unknown particle type {name!r}; expected one of {', '.join(PARTICLE_NAMES)}")
        lo, hi = (value, value) if isinstance(value, numbers.Real) else value
        if int(lo) != lo or int(hi) != hi or lo < 0 or hi < lo:
            raise ValueError(
                f"counts[{name!r}] must be a count >= 0 or a (min, max) pair with 0 <= min <= max, got {value!r}"
            )
        merged[name] = (int(lo), int(hi))
    return tuple((name, *merged[name]) for name in PARTICLE_NAMES)


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(f"{name} must be a (min, max) pair with {low} <= min <= max <= {high}, got {value!r}")


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of one simulated run (see ``cryokit.synth.simulate_run``).

    Attributes:
        shape_zyx: level-0 volume shape (z, y, x) in voxels.
        voxel_spacing_angstrom_zyx: level-0 spacing (z, y, x), the real data's by default.
        difficulty: ``"easy"``, ``"default"`` or ``"hard"``: sets ``snr``, ``crowding`` and ``clutter``
            unless given.
        snr: signal power inside particles over white-noise power (before the denoising filter).
        crowding: multiplies the particle counts.
        clutter: multiplies the amounts of vesicles, debris and gold beads.
        counts: per particle type a count or a (min, max) range per reference-size run; types not
            given keep ``DEFAULT_COUNTS``. Stored as ``((name, min, max), ...)``.
        scale_counts_to_shape: scale counts (and clutter) by the volume relative to 184 x 630 x 630.
        min_separation_factor: centres are at least ``factor * (r1 + r2)`` apart (catalog radii).
        n_vesicles, n_debris, n_gold: (min, max) clutter objects per reference-size run.
        debris_radius_angstrom: (min, max) radius of debris, compact solid ellipsoids standing for the
            unlabelled proteins of a real sample (drawn log-uniformly, anisotropy up to 1.4).
        debris_contrast: (min, max) density of debris.
        vesicle_radius_angstrom: (min, max) vesicle radius.
        ice_thickness_fraction: (thin end, thick end) of the ice slab as a fraction of the z extent.
        ice_contrast: density of the ice slab (particles have about 1).
        tilt_range_degrees: the tilt series covers +-this angle about the y axis (missing wedge).
        defocus_um: CTF defocus in micrometres.
        amplitude_contrast: CTF amplitude contrast (the low-frequency transfer).
        bfactor_angstrom2: CTF envelope B-factor.
        denoise_sigma_voxels: Gaussian blur (level-0 voxels) of the ``denoised`` tomo type.
        wbp_noise_boost: extra high-frequency noise of ``wbp`` (gain at Nyquist is ``1 + boost``).
        tomo_types: tomo types to produce (any of ``cryokit.io.TOMO_TYPES``).
        intensity_scale: standard deviation of the ``wbp`` volume (the real data's are tiny).
        n_levels: multiscale levels written.
        seed: the default seed of ``simulate_run``.
        domain: ``"randomized"`` (the default) or ``"fixed"`` (every knob as set here: the same bytes
            as before domains existed). A randomized run draws its imaging, ice, crowding, clutter and
            structural variants from ``domain_ranges`` (``cryokit.synth.domains``), seeded by the run's
            seed, and these drawn values replace the knobs of the same name here (``defocus_um``,
            ``amplitude_contrast``, ``bfactor_angstrom2``, ``tilt_range_degrees``,
            ``denoise_sigma_voxels``, ``intensity_scale``, ``ice_thickness_fraction``, ``ice_contrast``).
            The drawn SNR is multiplied by ``snr / 0.1`` and the drawn crowding by ``crowding``, so the
            difficulty still moves the family; ``clutter``, ``n_vesicles``, ``n_gold`` and ``n_debris``
            still set the clutter amounts the draw multiplies. Pin ``domain="fixed"`` to set a knob exactly.
        domain_ranges: where a randomized run draws from (ignored when ``domain="fixed"``).

    ``snr``, ``crowding`` and ``clutter`` are resolved from ``difficulty`` when the config is made, so
    ``dataclasses.replace(config, difficulty="hard")`` keeps the old values: use
    ``config_for_difficulty("hard", ...)`` instead.
    """

    shape_zyx: tuple[int, int, int] = REFERENCE_SHAPE_ZYX
    voxel_spacing_angstrom_zyx: tuple[float, float, float] = REFERENCE_SPACING_ANGSTROM_ZYX
    difficulty: str = "default"
    snr: float | None = None
    crowding: float | None = None
    clutter: float | None = None
    counts: tuple = field(default_factory=lambda: _normalise_counts({}))
    scale_counts_to_shape: bool = True
    min_separation_factor: float = 1.0
    n_vesicles: tuple[int, int] = (2, 5)
    n_debris: tuple[int, int] = (500, 700)
    debris_radius_angstrom: tuple[float, float] = (25.0, 140.0)
    debris_contrast: tuple[float, float] = (0.3, 1.1)
    n_gold: tuple[int, int] = (2, 6)
    vesicle_radius_angstrom: tuple[float, float] = (250.0, 700.0)
    ice_thickness_fraction: tuple[float, float] = (0.6, 0.85)
    ice_contrast: float = 0.3
    tilt_range_degrees: float = 60.0
    defocus_um: float = 3.0
    amplitude_contrast: float = 0.07
    bfactor_angstrom2: float = 4000.0
    denoise_sigma_voxels: float = 1.2
    wbp_noise_boost: float = 1.0
    tomo_types: tuple[str, ...] = ("denoised", "wbp")
    intensity_scale: float = 1e-5
    n_levels: int = 3
    seed: int = 0
    domain: str = "randomized"
    domain_ranges: DomainRanges = field(default_factory=DomainRanges)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {', '.join(DOMAINS)}, got {self.domain!r}")
        if not isinstance(self.domain_ranges, DomainRanges):
            raise ValueError(f"domain_ranges must be a DomainRanges, got {type(self.domain_ranges).__name__}")
        if self.difficulty not in DIFFICULTY_PRESETS:
            raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTY_PRESETS)}, got {self.difficulty!r}")
        for knob, value in DIFFICULTY_PRESETS[self.difficulty].items():
            if getattr(self, knob) is None:
                object.__setattr__(self, knob, value)
        object.__setattr__(self, "counts", _normalise_counts(self.counts))
        object.__setattr__(self, "shape_zyx", tuple(int(n) for n in self.shape_zyx))
        object.__setattr__(self, "voxel_spacing_angstrom_zyx", tuple(float(s) for s in self.voxel_spacing_angstrom_zyx))
        object.__setattr__(self, "tomo_types", tuple(self.tomo_types))
        self._check_numbers()
        self._check_fits()

    def _check_numbers(self) -> None:
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 8:
            raise ValueError(f"shape_zyx must be three sizes >= 8 (z, y, x), got {self.shape_zyx!r}")
        if len(self.voxel_spacing_angstrom_zyx) != 3 or min(self.voxel_spacing_angstrom_zyx) <= 0:
            raise ValueError(
                f"voxel_spacing_angstrom_zyx must be three positive numbers, got {self.voxel_spacing_angstrom_zyx!r}"
            )
        positive = {
            "snr": self.snr,
            "crowding": self.crowding,
            "defocus_um": self.defocus_um,
            "intensity_scale": self.intensity_scale,
            "min_separation_factor": self.min_separation_factor,
        }
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.ice_contrast) and self.ice_contrast >= 0):
            raise ValueError(f"ice_contrast must be a number >= 0, got {self.ice_contrast!r}")
        if not (math.isfinite(self.clutter) and self.clutter >= 0):
            raise ValueError(f"clutter must be a number >= 0, got {self.clutter!r}")
        if not 0 < self.tilt_range_degrees <= 90:
            raise ValueError(f"tilt_range_degrees must be in (0, 90], got {self.tilt_range_degrees!r}")
        for name in ("n_vesicles", "n_debris", "n_gold"):
            _check_range(name, getattr(self, name), 0, math.inf)
        _check_range("vesicle_radius_angstrom", self.vesicle_radius_angstrom, 1.0, math.inf)
        _check_range("debris_radius_angstrom", self.debris_radius_angstrom, 1.0, math.inf)
        _check_range("debris_contrast", self.debris_contrast, 0.0, math.inf)
        _check_range("ice_thickness_fraction", self.ice_thickness_fraction, 0.05, 1.0)
        unknown = [t for t in self.tomo_types if t not in TOMO_TYPES]
        if unknown or not self.tomo_types:
            raise ValueError(f"tomo_types must be a non-empty subset of {TOMO_TYPES}, got {self.tomo_types!r}")
        if not 1 <= self.n_levels <= 6:
            raise ValueError(f"n_levels must be in 1..6, got {self.n_levels!r}")

    def _check_fits(self) -> None:
        """Each type that may be placed must fit in the thin end of the ice slab and laterally."""
        z, y, x = self.shape_zyx
        ranges = self.domain_ranges
        thin_end = self.ice_thickness_fraction[0] if self.domain == "fixed" else ranges.ice_thickness_fraction[0]
        slab_voxels = thin_end * z
        for name, _, hi in self.counts:
            if hi == 0:
                continue
            radius_voxels = radius_angstrom_to_voxels(particle(name).radius_angstrom, self.voxel_spacing_angstrom_zyx)
            if 2 * radius_voxels + 2 > min(slab_voxels, y, x):
                raise ValueError(
                    f"shape_zyx {self.shape_zyx} is too small for {name} (diameter {2 * radius_voxels:.1f} voxels; "
                    f"the thin end of the ice slab is {slab_voxels:.1f} voxels): enlarge the shape or set "
                    f"counts={{{name!r}: 0}}"
                )

    @property
    def count_ranges(self) -> dict[str, tuple[int, int]]:
        """``{particle: (min, max)}`` per reference-size run."""
        return {name: (lo, hi) for name, lo, hi in self.counts}

    @property
    def volume_factor(self) -> float:
        """Volume relative to the reference 184 x 630 x 630 (1.0 when counts are not scaled)."""
        if not self.scale_counts_to_shape:
            return 1.0
        return math.prod(self.shape_zyx) / math.prod(REFERENCE_SHAPE_ZYX)


def config_for_difficulty(name: str, **overrides) -> SimulationConfig:
    """A config at a difficulty preset, e.g. ``config_for_difficulty("hard", shape_zyx=(64, 128, 128))``."""
    return SimulationConfig(difficulty=name, **overrides)
