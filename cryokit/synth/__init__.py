"""Synthetic cryo-ET runs: six particle types with their real shapes and sizes, clutter, an ice slab,
a missing wedge, a CTF and noise, written in the exact Kaggle layout with picks in Angstrom.

Typical use::

    from cryokit.synth import SimulationConfig, simulate_dataset
    simulate_dataset("data/sim", n_runs=4, seed=0, config=SimulationConfig(difficulty="default"))

    # a family of domains: every run draws its imaging, ice, clutter and particle variants
    held_out = ["recon_style=wbp", "defocus_um=4:5", "variant.thyroglobulin=1"]
    train = SimulationConfig(domain="randomized", domain_ranges=DomainRanges().without(*held_out))
    test = SimulationConfig(domain="randomized", domain_ranges=DomainRanges().only(*held_out))
"""

from __future__ import annotations

from cryokit.synth.config import (
    DEFAULT_COUNTS,
    DIFFICULTY_PRESETS,
    DOMAINS,
    REFERENCE_SHAPE_ZYX,
    REFERENCE_SPACING_ANGSTROM_ZYX,
    SimulationConfig,
    config_for_difficulty,
)
from cryokit.synth.domains import DomainParameters, DomainRanges, draw_domain
from cryokit.synth.simulate import (
    SimulatedRun,
    domain_config,
    render_density,
    run_name,
    simulate_dataset,
    simulate_run,
    write_run,
)

__all__ = [
    "DEFAULT_COUNTS",
    "DOMAINS",
    "DomainParameters",
    "DomainRanges",
    "domain_config",
    "draw_domain",
    "DIFFICULTY_PRESETS",
    "REFERENCE_SHAPE_ZYX",
    "REFERENCE_SPACING_ANGSTROM_ZYX",
    "SimulationConfig",
    "SimulatedRun",
    "config_for_difficulty",
    "render_density",
    "run_name",
    "simulate_dataset",
    "simulate_run",
    "write_run",
]
