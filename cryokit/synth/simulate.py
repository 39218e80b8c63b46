"""Simulate runs and whole datasets in the exact Kaggle layout.

``simulate_run`` places particles and clutter (``placement``), renders their density at their exact
continuous centres (``shapes``) and images it into tomo types (``imaging``). ``simulate_dataset`` writes
runs as ``{split}/static/ExperimentRuns/{run}/VoxelSpacing10.000/{tomo_type}.zarr`` (levels 0, 1, 2),
the train split's picks as ``train/overlay/ExperimentRuns/{run}/Picks/{particle}.json`` (Angstrom) and a
``sample_submission.csv`` at the root. Like Kaggle's, the test split has no picks and only ``denoised``.

Each run also gets ``ExperimentRuns/{run}/simulation.json``: the domain, the seed, the knobs used and,
for a randomized run, the parameters it drew (``cryokit.synth.domains``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cryokit.coords import voxel_zyx_to_angstrom_xyz, voxels_to_angstrom
from cryokit.io.atomic import atomic_write_text
from cryokit.io.layout import SPLITS, spacing_dir_path
from cryokit.io.picks import write_run_picks
from cryokit.io.submission import read_submission, write_submission
from cryokit.io.tomogram import write_tomogram
from cryokit.particles import PARTICLE_NAMES
from cryokit.synth.clutter import render_large_clutter
from cryokit.synth.config import DIFFICULTY_PRESETS, SimulationConfig
from cryokit.synth.domains import DomainParameters, draw_domain
from cryokit.synth.imaging import image_tomograms
from cryokit.synth.placement import Scene, place_scene
from cryokit.synth.shapes import render_template

__all__ = [
    "SIMULATION_JSON",
    "SimulatedRun",
    "domain_config",
    "draw_run_domain",
    "mean_ice_thickness_angstrom",
    "render_density",
    "simulate_run",
    "write_run",
    "run_name",
    "simulate_dataset",
]

SIMULATION_JSON = "simulation.json"
_DOMAIN_STREAM = 0xD0  # the domain draw's own random stream: placement and noise keep theirs

log = logging.getLogger(__name__)

SeedLike = Union[int, Sequence[int]]


@dataclass(frozen=True)
class SimulatedRun:
    """One simulated run.

    Attributes:
        volumes: ``{tomo_type: (Z, Y, X) float32}`` at level 0.
        picks: ``{particle: centres_angstrom_xyz (N, 3)}``, all six types (some may be empty).
        scene: everything placed (particles and clutter, with orientations).
        voxel_spacing_angstrom_zyx: level-0 spacing.
        density_zyx: the noiseless density before imaging (only with ``keep_density=True``).
        record: what ``simulation.json`` holds: domain, seed, knobs and the drawn parameters.
        domain: the drawn parameters of a randomized run (None for a fixed one).
    """

    volumes: dict[str, np.ndarray]
    picks: dict[str, np.ndarray]
    scene: Scene
    voxel_spacing_angstrom_zyx: tuple[float, float, float]
    density_zyx: np.ndarray | None = None
    record: dict | None = None
    domain: DomainParameters | None = None


def draw_run_domain(config: SimulationConfig, seed: SeedLike) -> DomainParameters:
    """The domain parameters of a randomized run with this seed (its own stream of the seed)."""
    return draw_domain(config.domain_ranges, np.random.default_rng([*np.atleast_1d(seed).tolist(), _DOMAIN_STREAM]))


def _scaled(value_range: tuple[float, float], factor: float) -> tuple[float, float]:
    return (value_range[0] * factor, value_range[1] * factor)


def domain_config(config: SimulationConfig, domain: DomainParameters) -> SimulationConfig:
    """A fixed-domain config holding a randomized run's drawn values (see ``SimulationConfig.domain``)."""
    present = set(domain.clutter_kinds)
    thin = domain.ice_thickness_fraction
    return dataclasses.replace(
        config,
        domain="fixed",
        snr=domain.snr * config.snr / DIFFICULTY_PRESETS["default"]["snr"],
        crowding=domain.crowding * config.crowding,
        defocus_um=domain.defocus_um,
        amplitude_contrast=domain.amplitude_contrast,
        bfactor_angstrom2=domain.bfactor_angstrom2,
        tilt_range_degrees=domain.tilt_range_degrees,
        denoise_sigma_voxels=domain.denoise_sigma_voxels,
        intensity_scale=domain.intensity_scale,
        ice_thickness_fraction=(thin, max(thin, min(thin + domain.ice_gradient, 0.95))),
        ice_contrast=domain.ice_contrast,
        n_vesicles=_scaled(config.n_vesicles, domain.vesicle_amount if "vesicle" in present else 0.0),
        n_gold=_scaled(config.n_gold, domain.gold_amount if "gold" in present else 0.0),
        n_debris=_scaled(config.n_debris, domain.debris_amount if "debris" in present else 0.0),
    )


def _knobs(config: SimulationConfig) -> dict:
    """The config's values as JSON (the ranges of a randomized run included)."""
    values = dataclasses.asdict(config)
    values["counts"] = {name: [lo, hi] for name, lo, hi in config.counts}
    values["domain_ranges"]["variants"] = dict(config.domain_ranges.variants)
    return values


def mean_ice_thickness_angstrom(config: SimulationConfig) -> float:
    """Mean thickness of the ice slab (Angstrom): the thickness of a tilt plane in Fourier space."""
    mean_voxels = float(np.mean(config.ice_thickness_fraction)) * config.shape_zyx[0]
    return voxels_to_angstrom(mean_voxels, config.voxel_spacing_angstrom_zyx)


def render_density(scene: Scene, config: SimulationConfig) -> np.ndarray:
    """The (Z, Y, X) float32 density of a scene: ice slab plus every object at its exact centre."""
    spacing_zyx = np.asarray(config.voxel_spacing_angstrom_zyx)
    density = scene.slab.mask()
    if scene.membranes or scene.carbon is not None:
        ice = density.copy()
        density *= np.float32(config.ice_contrast)
        _, size_y, size_x = config.shape_zyx
        bottom, top = scene.slab.bounds(np.arange(size_y)[:, None], np.arange(size_x)[None, :])
        render_large_clutter(density, ice, (bottom + top) / 2, scene.membranes, scene.carbon, spacing_zyx)
    else:
        density *= np.float32(config.ice_contrast)
    for obj in scene.objects:
        render_template(
            density,
            obj.template,
            obj.centre_angstrom_xyz,
            obj.rotation_xyz,
            spacing_zyx,
            scale=obj.scale,
            amplitude=obj.amplitude,
        )
    return density


def simulate_run(
    config: SimulationConfig | None = None,
    seed: SeedLike | None = None,
    keep_density: bool = False,
    domain: DomainParameters | None = None,
) -> SimulatedRun:
    """Simulate one run: tomograms of every ``config.tomo_types`` and the exact particle centres.

    Args:
        config: the knobs (``SimulationConfig()`` by default).
        seed: an int or a sequence of ints (``config.seed`` by default); same seed, same bytes.
        keep_density: also return the noiseless density (for tests and figures).
        domain: with ``config.domain == "randomized"``, use these parameters instead of drawing them
            from the seed (to change one knob and keep the rest, in tests and benchmarks).

    Returns:
        A ``SimulatedRun``.

    Raises:
        ValueError: the particles cannot all be placed without overlaps.
    """
    config = config or SimulationConfig()
    seed = config.seed if seed is None else seed
    if np.any(np.asarray(seed) < 0):
        raise ValueError(f"seed must be a non-negative int or a sequence of them, got {seed!r}")
    record = {"domain": config.domain, "seed": np.atleast_1d(seed).tolist(), "config": _knobs(config)}
    if domain is not None and config.domain != "randomized":
        raise ValueError("simulate_run: domain parameters were given but config.domain is 'fixed'")
    if config.domain == "randomized":
        domain = draw_run_domain(config, seed) if domain is None else domain
        config = domain_config(config, domain)
        record["parameters"] = domain.to_dict()
    rng = np.random.default_rng(seed)
    scene = place_scene(config, rng, domain)
    density = render_density(scene, config)
    thickness = None if domain is None else mean_ice_thickness_angstrom(config)
    volumes = image_tomograms(density, config, rng, domain, thickness)
    return SimulatedRun(
        volumes,
        scene.picks(),
        scene,
        config.voxel_spacing_angstrom_zyx,
        density if keep_density else None,
        record,
        domain,
    )


def write_run(root: str | Path, split: str, run: str, simulated: SimulatedRun, n_levels: int = 3) -> Path:
    """Write a simulated run's tomograms (and, for train, its picks) into the Kaggle layout.

    ``simulation.json`` (the run's ``record``) goes beside the run's voxel-spacing folder, written last.
    """
    spacing_dir = spacing_dir_path(root, split, run)
    for tomo_type, volume in simulated.volumes.items():
        write_tomogram(spacing_dir / f"{tomo_type}.zarr", volume, simulated.voxel_spacing_angstrom_zyx, n_levels)
    if split == "train":
        write_run_picks(root, split, run, simulated.picks)
    if simulated.record is not None:
        atomic_write_text(spacing_dir.parent / SIMULATION_JSON, json.dumps(simulated.record, indent=1) + "\n")
    return spacing_dir.parent


def run_name(seed: int, index: int) -> str:
    """``TS_sim_{seed}_{index}``."""
    return f"TS_sim_{seed}_{index}"


def _sample_rows(runs: list[str], config: SimulationConfig, rng: np.random.Generator) -> pd.DataFrame:
    """One made-up row per run and particle type, inside the volume (like Kaggle's sample file)."""
    upper_xyz = voxel_zyx_to_angstrom_xyz(np.asarray(config.shape_zyx, float) - 1, config.voxel_spacing_angstrom_zyx)[0]
    rows = [(run, name, *rng.uniform(0, upper_xyz)) for run in runs for name in PARTICLE_NAMES]
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z"])


def _update_sample_submission(root: Path, runs: list[str], config: SimulationConfig, seed: int) -> Path:
    path = root / "sample_submission.csv"
    rows = _sample_rows(runs, config, np.random.default_rng([seed, 2**31]))
    if path.is_file():
        previous = read_submission(path)
        rows = pd.concat([previous[~previous["experiment"].isin(runs)], rows], ignore_index=True)
    return write_submission(rows, path)


def simulate_dataset(
    out_root: str | Path,
    n_runs: int,
    seed: int = 0,
    split: str = "train",
    config: SimulationConfig | None = None,
    progress: bool = True,
) -> list[str]:
    """Simulate ``n_runs`` runs named ``TS_sim_{seed}_{i}`` into ``out_root`` in the Kaggle layout.

    Run ``i`` uses the seed ``(seed, i)``, so datasets with different seeds never share a run.
    ``sample_submission.csv`` at the root gets rows for these runs (others already there are kept).

    Args:
        out_root: the dataset root (created if missing).
        n_runs: number of runs (>= 1).
        seed: dataset seed.
        split: ``"train"`` (all ``config.tomo_types`` and picks) or ``"test"`` (``denoised`` only, no picks).
        config: simulator knobs (``SimulationConfig()`` by default).
        progress: show a tqdm bar over runs.

    Returns:
        The run names written.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(n_runs, (int, np.integer)) or n_runs < 1:
        raise ValueError(f"n_runs must be a positive integer, got {n_runs!r}")
    config = config or SimulationConfig()
    if split == "test":
        config = dataclasses.replace(config, tomo_types=("denoised",))
    root = Path(out_root)
    runs = [run_name(seed, i) for i in range(n_runs)]
    for i, run in enumerate(tqdm(runs, desc=f"simulating {split}", unit="run", disable=not progress)):
        write_run(root, split, run, simulate_run(config, seed=(seed, i)), config.n_levels)
    _update_sample_submission(root, runs, config, seed)
    log.info("simulated %d %s runs into %s", n_runs, split, root)
    return runs
