"""The simulator as a family of domains: a range for every physical knob, drawn once per run.

``DomainRanges`` holds, for every knob of the imaging chain, the sample and the clutter, either a
``(min, max)`` range (continuous knobs) or a tuple of choices (reconstruction styles, clutter kinds,
structural variants per particle type). ``draw_domain(ranges, rng)`` draws one run's
``DomainParameters``; ``simulate_run`` does so from the run's seed when ``SimulationConfig.domain`` is
``"randomized"`` (same seed, same bytes).

Families, for benchmarks that hold a part of the domain out, are strings:

* ``"knob=choice"`` for a choice knob: ``"recon_style=wbp"``, ``"variant.thyroglobulin=1"``
  (structural variant 1 of thyroglobulin), ``"clutter=carbon"`` (runs with a carbon edge: clutter
  kinds are not exclusive, so ``only`` makes the kind present in every run, ``without`` in none);
* ``"knob=lo:hi"`` for a range knob: ``"defocus_um=4:5"``.

``ranges.without(family, ...)`` excludes families (a range keeps its other part, so the held-out part
must touch one end of it); ``ranges.only(family, ...)`` keeps nothing else; ``parameters.in_family(f)``
says whether a draw belongs to a family. Train on ``DomainRanges().without(f)``, test on
``DomainRanges().only(f)``: the two never share a draw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from cryokit.particles import PARTICLE_NAMES

__all__ = [
    "RECON_STYLES",
    "CLUTTER_KINDS",
    "N_VARIANTS",
    "N_CONFORMATIONS",
    "DomainRanges",
    "DomainParameters",
    "draw_domain",
    "parse_family",
]

# How the ``denoised`` tomo type is made: a Gaussian low-pass (today's), a sharp Butterworth low-pass,
# edge-preserving diffusion, a median filter, or no denoising at all (weighted back-projection streaks).
RECON_STYLES: tuple[str, ...] = ("gaussian", "butterworth", "diffusion", "median", "wbp")
CLUTTER_KINDS: tuple[str, ...] = ("membrane", "vesicle", "gold", "carbon", "debris")
N_VARIANTS = 3  # structural variants per particle type (cryokit.synth.shapes); 0 is the fixed domain's
N_CONFORMATIONS = 8  # continuous conformations are drawn from this many steps

# Range knobs drawn log-uniformly (they span a factor rather than an interval).
_LOG_KNOBS = frozenset({"snr", "intensity_scale", "bfactor_angstrom2"})


def _all_variants() -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(range(N_VARIANTS))) for name in PARTICLE_NAMES)


@dataclass(frozen=True)
class DomainRanges:
    """Where each knob of a randomized run is drawn from (uniformly; ``snr``, ``intensity_scale`` and
    ``bfactor_angstrom2`` log-uniformly).

    Attributes:
        defocus_um: CTF defocus (micrometres).
        bfactor_angstrom2: CTF envelope B-factor (A^2): the higher, the more high frequencies are lost.
        amplitude_contrast: CTF amplitude contrast.
        snr: signal-to-noise ratio (as ``SimulationConfig.snr``), times the difficulty's ``snr / 0.1``.
        tilt_range_degrees: the tilt series covers +-this angle (missing wedge).
        tilt_axis_degrees: in-plane angle of the tilt axis from the y axis.
        tilt_step_degrees: step of the tilt series; with ``streak_strength`` it makes the
            weighted back-projection streaks (Fourier space is sampled on one plane per tilt).
        streak_strength: 0 = continuous wedge, 1 = only the tilt planes are measured.
        noise_colour: noise spectrum ``|k|^colour`` (0 white, > 0 grainy, < 0 blotchy), same power.
        recon_styles: choices for how ``denoised`` is made (``RECON_STYLES``).
        denoise_sigma_voxels: strength of the denoising (level-0 voxels).
        intensity_scale: standard deviation of the white noise in the output (overall contrast).
        intensity_offset: mean of the output, in units of ``intensity_scale``.
        ice_thickness_fraction: thin end of the ice slab as a fraction of the z extent.
        ice_gradient: the thick end is the thin end plus this (fraction of z, capped at 0.95).
        ice_contrast: density of the ice (particles have about 1).
        crowding: multiplies the particle counts (times the difficulty's crowding).
        clutter_kinds: the kinds of clutter that may appear (``CLUTTER_KINDS``); each appears in a run
            with probability ``clutter_presence``.
        clutter_presence: probability that an allowed clutter kind is in a run.
        clutter_required: kinds in every run (``only("clutter=carbon")`` adds one).
        n_membranes: large membranes (arcs of bilayer crossing the volume) when present.
        vesicle_amount, gold_amount, debris_amount: multiply ``SimulationConfig.n_vesicles``, ``n_gold``
            and ``n_debris`` (small densities) when present.
        carbon_fraction: lateral fraction covered by the carbon film beyond its straight edge.
        variants: per particle type the structural variants allowed (``((name, (0, 1, 2)), ...)``);
            each run draws one per type; continuous conformations are drawn per particle.
    """

    defocus_um: tuple[float, float] = (1.5, 5.0)
    bfactor_angstrom2: tuple[float, float] = (2000.0, 8000.0)
    amplitude_contrast: tuple[float, float] = (0.04, 0.15)
    snr: tuple[float, float] = (0.07, 0.18)
    tilt_range_degrees: tuple[float, float] = (45.0, 70.0)
    tilt_axis_degrees: tuple[float, float] = (-15.0, 15.0)
    tilt_step_degrees: tuple[float, float] = (2.0, 4.0)
    streak_strength: tuple[float, float] = (0.2, 0.9)
    noise_colour: tuple[float, float] = (-0.6, 0.6)
    recon_styles: tuple[str, ...] = RECON_STYLES
    denoise_sigma_voxels: tuple[float, float] = (0.8, 1.8)
    intensity_scale: tuple[float, float] = (3e-6, 3e-5)
    intensity_offset: tuple[float, float] = (-1.0, 1.0)
    ice_thickness_fraction: tuple[float, float] = (0.55, 0.8)
    ice_gradient: tuple[float, float] = (0.0, 0.2)
    ice_contrast: tuple[float, float] = (0.15, 0.45)
    crowding: tuple[float, float] = (0.75, 1.25)
    clutter_kinds: tuple[str, ...] = CLUTTER_KINDS
    clutter_presence: float = 0.75
    clutter_required: tuple[str, ...] = ()
    n_membranes: tuple[float, float] = (1.0, 3.0)
    vesicle_amount: tuple[float, float] = (0.5, 2.0)
    gold_amount: tuple[float, float] = (0.5, 3.0)
    debris_amount: tuple[float, float] = (0.5, 1.5)
    carbon_fraction: tuple[float, float] = (0.05, 0.2)
    variants: tuple = field(default_factory=_all_variants)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", _normalise_variants(self.variants))
        for knob in self.range_knobs():
            value = tuple(float(v) for v in getattr(self, knob))
            if len(value) != 2 or not (math.isfinite(value[0]) and math.isfinite(value[1])) or value[0] > value[1]:
                raise ValueError(f"DomainRanges.{knob} must be a (min, max) pair with min <= max, got {value!r}")
            if knob in _LOG_KNOBS and value[0] <= 0:
                raise ValueError(f"DomainRanges.{knob} is drawn log-uniformly: its min must be > 0, got {value!r}")
            object.__setattr__(self, knob, value)
        _check_choices("recon_styles", self.recon_styles, RECON_STYLES, allow_empty=False)
        _check_choices("clutter_kinds", self.clutter_kinds, CLUTTER_KINDS, allow_empty=True)
        _check_choices("clutter_required", self.clutter_required, self.clutter_kinds, allow_empty=True)
        if not 0 <= self.clutter_presence <= 1:
            raise ValueError(f"DomainRanges.clutter_presence must be in [0, 1], got {self.clutter_presence!r}")
        limits = {
            "tilt_range_degrees": (1.0, 90.0),
            "tilt_step_degrees": (0.5, 30.0),
            "streak_strength": (0.0, 1.0),
            "amplitude_contrast": (0.0, 0.5),
            "ice_thickness_fraction": (0.05, 0.95),
            "carbon_fraction": (0.0, 0.5),
        }
        for knob, (low, high) in limits.items():
            lo, hi = getattr(self, knob)
            if lo < low or hi > high:
                raise ValueError(f"DomainRanges.{knob} must lie in [{low}, {high}], got {(lo, hi)!r}")
        for knob in ("defocus_um", "crowding", "denoise_sigma_voxels", "ice_gradient", "ice_contrast", "n_membranes"):
            if getattr(self, knob)[0] < 0 or (knob in ("defocus_um", "crowding") and getattr(self, knob)[0] == 0):
                raise ValueError(f"DomainRanges.{knob} must be positive, got {getattr(self, knob)!r}")

    @classmethod
    def range_knobs(cls) -> tuple[str, ...]:
        """Names of the ``(min, max)`` knobs, in drawing order."""
        choice = {"recon_styles", "clutter_kinds", "clutter_presence", "clutter_required", "variants"}
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in choice)

    @property
    def variant_choices(self) -> dict[str, tuple[int, ...]]:
        """``{particle: allowed structural variants}``."""
        return dict(self.variants)

    def without(self, *families: str) -> DomainRanges:
        """These ranges with every family excluded (see the module docstring for the family strings)."""
        ranges = self
        for family in families:
            ranges = ranges._restrict(family, keep=False)
        return ranges

    def only(self, *families: str) -> DomainRanges:
        """These ranges restricted to the families (all of them at once)."""
        ranges = self
        for family in families:
            ranges = ranges._restrict(family, keep=True)
        return ranges

    def _restrict(self, family: str, keep: bool) -> DomainRanges:
        knob, value = parse_family(family)
        if knob == "recon_style":
            return dataclasses.replace(self, recon_styles=_keep_choices(self.recon_styles, value, keep, family))
        if knob == "clutter":  # kinds are not exclusive: "only" makes a kind present in every run
            if value not in self.clutter_kinds:
                raise ValueError(f"family {family!r}: {value!r} is not among the allowed {self.clutter_kinds!r}")
            if keep:
                required = tuple(dict.fromkeys(self.clutter_required + (value,)))
                return dataclasses.replace(self, clutter_required=required)
            return dataclasses.replace(
                self,
                clutter_kinds=tuple(k for k in self.clutter_kinds if k != value),
                clutter_required=tuple(k for k in self.clutter_required if k != value),
            )
        if knob.startswith("variant."):
            name = knob.split(".", 1)[1]
            choices = dict(self.variants)
            choices[name] = _keep_choices(choices[name], value, keep, family)
            return dataclasses.replace(self, variants=tuple(choices.items()))
        lo, hi = getattr(self, knob)
        f_lo, f_hi = value
        if keep:
            new = (max(lo, f_lo), min(hi, f_hi))
            if new[0] > new[1]:
                raise ValueError(f"family {family!r} does not overlap DomainRanges.{knob} = {(lo, hi)!r}")
        elif f_lo <= lo and f_hi >= hi:
            raise ValueError(f"family {family!r} covers all of DomainRanges.{knob} = {(lo, hi)!r}: nothing is left")
        elif f_lo <= lo:
            new = (max(f_hi, lo), hi)
        elif f_hi >= hi:
            new = (lo, min(f_lo, hi))
        else:
            raise ValueError(
                f"family {family!r} lies inside DomainRanges.{knob} = {(lo, hi)!r}: excluding it would split the "
                f"range in two; hold out a part that touches one end"
            )
        return dataclasses.replace(self, **{knob: new})


def _normalise_variants(variants) -> tuple[tuple[str, tuple[int, ...]], ...]:
    given = dict(variants)
    unknown = [name for name in given if name not in PARTICLE_NAMES]
    if unknown:
        raise ValueError(f"DomainRanges.variants: unknown particle types {unknown}; expected {PARTICLE_NAMES}")
    merged = dict(_all_variants())
    merged.update({name: tuple(int(v) for v in choices) for name, choices in given.items()})
    for name, choices in merged.items():
        if not choices or any(not 0 <= v < N_VARIANTS for v in choices) or len(set(choices)) != len(choices):
            raise ValueError(
                f"DomainRanges.variants[{name!r}] must be distinct variants in 0..{N_VARIANTS - 1}, got {choices!r}"
            )
    return tuple((name, merged[name]) for name in PARTICLE_NAMES)


def _check_choices(knob: str, value: tuple, allowed: tuple, allow_empty: bool) -> None:
    unknown = [v for v in value if v not in allowed]
    if unknown or (not value and not allow_empty) or len(set(value)) != len(value):
        raise ValueError(f"DomainRanges.{knob} must be distinct choices among {allowed}, got {value!r}")


def _keep_choices(choices: tuple, value, keep: bool, family: str) -> tuple:
    if value not in choices:
        raise ValueError(f"family {family!r}: {value!r} is not among the allowed {choices!r}")
    new = (value,) if keep else tuple(c for c in choices if c != value)
    if not new:
        raise ValueError(f"family {family!r} is the only choice left: excluding it leaves nothing to draw")
    return new


def parse_family(family: str) -> tuple[str, object]:
    """``"recon_style=wbp"`` -> ``("recon_style", "wbp")``; ``"defocus_um=4:5"`` -> ``("defocus_um", (4.0, 5.0))``.

    Raises:
        ValueError: the string is not ``knob=value`` with a known knob and a valid value.
    """
    knob, sep, value = str(family).partition("=")
    knob, value = knob.strip(), value.strip()
    if not sep or not knob or not value:
        raise ValueError(f"family must be 'knob=value' or 'knob=lo:hi', got {family!r}")
    if knob == "recon_style":
        if value not in RECON_STYLES:
            raise ValueError(f"family {family!r}: recon_style must be one of {RECON_STYLES}")
        return knob, value
    if knob == "clutter":
        if value not in CLUTTER_KINDS:
            raise ValueError(f"family {family!r}: clutter must be one of {CLUTTER_KINDS}")
        return knob, value
    if knob.startswith("variant."):
        name = knob.split(".", 1)[1]
        if name not in PARTICLE_NAMES or not value.isdigit() or int(value) >= N_VARIANTS:
            raise ValueError(
                f"family {family!r}: expected 'variant.PARTICLE=INDEX' with PARTICLE one of {PARTICLE_NAMES} and "
                f"INDEX in 0..{N_VARIANTS - 1}"
            )
        return knob, int(value)
    if knob not in DomainRanges.range_knobs():
        raise ValueError(
            f"family {family!r}: unknown knob {knob!r}; expected recon_style, clutter, variant.PARTICLE or one of "
            f"{', '.join(DomainRanges.range_knobs())}"
        )
    try:
        lo, hi = (float(v) for v in value.split(":"))
    except ValueError:
        raise ValueError(f"family {family!r}: a range knob takes 'lo:hi', got {value!r}") from None
    if not lo <= hi:
        raise ValueError(f"family {family!r}: lo must be <= hi")
    return knob, (lo, hi)


@dataclass(frozen=True)
class DomainParameters:
    """One run's draw from ``DomainRanges`` (the knobs' names and meanings are the ranges').

    ``clutter_kinds`` are the kinds present in this run, ``variants`` the structural variant of each
    particle type (``((name, index), ...)``).
    """

    defocus_um: float
    bfactor_angstrom2: float
    amplitude_contrast: float
    snr: float
    tilt_range_degrees: float
    tilt_axis_degrees: float
    tilt_step_degrees: float
    streak_strength: float
    noise_colour: float
    recon_style: str
    denoise_sigma_voxels: float
    intensity_scale: float
    intensity_offset: float
    ice_thickness_fraction: float
    ice_gradient: float
    ice_contrast: float
    crowding: float
    clutter_kinds: tuple[str, ...]
    n_membranes: float
    vesicle_amount: float
    gold_amount: float
    debris_amount: float
    carbon_fraction: float
    variants: tuple[tuple[str, int], ...]

    @property
    def variant_of(self) -> dict[str, int]:
        """``{particle: structural variant}``."""
        return dict(self.variants)

    def to_dict(self) -> dict:
        """JSON-ready values (what ``simulation.json`` records)."""
        values = dataclasses.asdict(self)
        values["clutter_kinds"] = list(self.clutter_kinds)
        values["variants"] = dict(self.variants)
        return values

    def in_family(self, family: str) -> bool:
        """Whether this draw belongs to ``family`` (a ``DomainRanges.without`` / ``only`` string)."""
        knob, value = parse_family(family)
        if knob == "recon_style":
            return self.recon_style == value
        if knob == "clutter":
            return value in self.clutter_kinds
        if knob.startswith("variant."):
            return self.variant_of[knob.split(".", 1)[1]] == value
        lo, hi = value
        return lo <= getattr(self, knob) <= hi


def _draw_range(knob: str, value: tuple[float, float], rng: np.random.Generator) -> float:
    lo, hi = value
    if knob in _LOG_KNOBS:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


def draw_domain(ranges: DomainRanges, rng: np.random.Generator) -> DomainParameters:
    """Draw one run's parameters: every range knob, then the reconstruction style, clutter and variants."""
    values = {knob: _draw_range(knob, getattr(ranges, knob), rng) for knob in DomainRanges.range_knobs()}
    values["recon_style"] = ranges.recon_styles[int(rng.integers(len(ranges.recon_styles)))]
    present = rng.random(len(ranges.clutter_kinds)) < ranges.clutter_presence
    values["clutter_kinds"] = tuple(
        kind for kind, keep in zip(ranges.clutter_kinds, present) if keep or kind in ranges.clutter_required
    )
    values["variants"] = tuple((name, int(choices[rng.integers(len(choices))])) for name, choices in ranges.variants)
    return DomainParameters(**values)
