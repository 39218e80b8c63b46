"""The simulator: layout and metadata, picks on the density, no overlaps, determinism, bad arguments."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.fft

from cryokit.cli import main
from cryokit.coords import angstrom_xyz_to_voxel_zyx, radius_angstrom_to_voxels
from cryokit.io import list_runs, open_run_tomogram, read_run_picks
from cryokit.io.submission import read_submission
from cryokit.particles import PARTICLE_NAMES, particle
from cryokit.synth import SimulationConfig, config_for_difficulty, simulate_dataset, simulate_run
from cryokit.synth.imaging import fourier_grid, noise_sigma
from cryokit.synth.shapes import render_template

REAL_SPACING_ZYX = (10.012444196428572, 10.012444196428572, 10.012444537618887)
TWO_EACH = {name: 2 for name in PARTICLE_NAMES}
NO_CLUTTER = dict(n_vesicles=(0, 0), n_debris=(0, 0), n_gold=(0, 0))


def small_config(**overrides) -> SimulationConfig:
    """64 x 96 x 96 voxels, two particles of each type, counts not scaled by volume; the fixed domain,
    whose knobs these tests check exactly (the randomized domain: tests/test_synth_domains.py)."""
    knobs = dict(
        domain="fixed",
        shape_zyx=(64, 96, 96),
        counts=TWO_EACH,
        scale_counts_to_shape=False,
        n_vesicles=(0, 0),
        n_debris=(6, 6),
        n_gold=(1, 1),
        ice_thickness_fraction=(0.75, 0.9),
        snr=2.0,
    )
    knobs.update(overrides)
    return SimulationConfig(**knobs)


@pytest.fixture(scope="module")
def clean_run():
    """A run without clutter at high SNR, with its noiseless density."""
    return simulate_run(small_config(snr=20.0, **NO_CLUTTER), seed=11, keep_density=True)


def _ball_means(volume_zyx: np.ndarray, centres_zyx: np.ndarray, radius_voxels: float) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in volume_zyx.shape], indexing="ij"), axis=-1)
    return np.array([volume_zyx[np.sum((grid - c) ** 2, axis=-1) <= radius_voxels**2].mean() for c in centres_zyx])


def test_layout_levels_and_metadata(tmp_path):
    config = SimulationConfig(
        shape_zyx=(37, 63, 65),
        counts={n: (1 if n == "apo-ferritin" else 0) for n in PARTICLE_NAMES},
        scale_counts_to_shape=False,
        **NO_CLUTTER,
    )
    runs = simulate_dataset(tmp_path, 2, seed=4, config=config, progress=False)
    assert runs == ["TS_sim_4_0", "TS_sim_4_1"] == list_runs(tmp_path, "train")
    for tomo_type in ("denoised", "wbp"):
        for level, shape in enumerate([(37, 63, 65), (19, 32, 33), (10, 16, 17)]):
            tomogram = open_run_tomogram(tmp_path, "train", runs[0], tomo_type, level)
            assert tomogram.shape_zyx == shape
            np.testing.assert_allclose(tomogram.voxel_spacing_angstrom_zyx, np.array(REAL_SPACING_ZYX) * 2**level)
            assert tomogram.read().dtype == np.float32
        zarray = json.loads((tomogram.path / "0" / ".zarray").read_text())
        assert zarray["dimension_separator"] == "/"
    picks_dir = tmp_path / "train" / "overlay" / "ExperimentRuns" / runs[0] / "Picks"
    assert sorted(p.name for p in picks_dir.glob("*.json")) == sorted(f"{n}.json" for n in PARTICLE_NAMES)
    document = json.loads((picks_dir / "apo-ferritin.json").read_text())
    assert document["unit"] == "angstrom" and document["pickable_object_name"] == "apo-ferritin"
    assert len(document["points"]) == 1 and document["run_name"] == runs[0]
    sample = read_submission(tmp_path / "sample_submission.csv")
    assert list(sample.columns) == ["id", "experiment", "particle_type", "x", "y", "z"]
    assert set(sample["experiment"]) == set(runs)


def test_test_split_has_denoised_only_and_no_picks(tmp_path):
    config = SimulationConfig(shape_zyx=(37, 63, 65), counts={n: 0 for n in PARTICLE_NAMES}, **NO_CLUTTER)
    simulate_dataset(tmp_path, 1, seed=2, split="test", config=config, progress=False)
    spacing_dir = tmp_path / "test" / "static" / "ExperimentRuns" / "TS_sim_2_0" / "VoxelSpacing10.000"
    assert sorted(p.name for p in spacing_dir.iterdir()) == ["denoised.zarr"]
    assert not (tmp_path / "test" / "overlay").exists()
    assert set(read_submission(tmp_path / "sample_submission.csv")["experiment"]) == {"TS_sim_2_0"}


def test_picks_land_on_the_density(clean_run):
    density, denoised = clean_run.density_zyx, clean_run.volumes["denoised"]
    ice = clean_run.scene.slab.mask() * np.float32(0.3)
    particles_only = density - ice
    rng = np.random.default_rng(0)
    all_picks_zyx = angstrom_xyz_to_voxel_zyx(np.concatenate(list(clean_run.picks.values())), REAL_SPACING_ZYX)
    random_zyx = rng.uniform(0.3, 0.7, size=(400, 3)) * (np.asarray(density.shape) - 1)
    clear = np.linalg.norm(random_zyx[:, None] - all_picks_zyx[None], axis=2).min(axis=1) > 22
    random_zyx = random_zyx[clear][:30]  # background: clear of every particle
    assert len(random_zyx) >= 10
    background = denoised[(particles_only < 0.01) & (ice > 0.29)]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in density.shape], indexing="ij"), axis=-1)
    for name in PARTICLE_NAMES:
        radius = radius_angstrom_to_voxels(particle(name).radius_angstrom, REAL_SPACING_ZYX)
        picks_zyx = angstrom_xyz_to_voxel_zyx(clean_run.picks[name], REAL_SPACING_ZYX)
        assert len(picks_zyx) == 2
        at_picks = _ball_means(density, picks_zyx, 0.8 * radius)
        assert at_picks.min() > _ball_means(density, random_zyx, 0.8 * radius).max() + 0.05, name
        # Cryo-ET contrast: the particle's body is dark in the imaged volume, by several noise sigmas.
        for centre in picks_zyx:
            body = (np.sum((grid - centre) ** 2, axis=-1) <= radius**2) & (particles_only > 0.3)
            assert body.sum() > 100
            assert denoised[body].mean() < background.mean() - 2 * background.std(), name


def test_picks_are_exact_sub_voxel_centres(clean_run):
    """apo-ferritin is centro-symmetric: each one's rendered density has its centroid at the pick."""
    ferritins = [o for o in clean_run.scene.objects if o.kind == "apo-ferritin"]
    picks_zyx = angstrom_xyz_to_voxel_zyx(clean_run.picks["apo-ferritin"], REAL_SPACING_ZYX)
    for obj, centre in zip(ferritins, picks_zyx):
        alone = np.zeros(clean_run.density_zyx.shape, dtype=np.float32)
        render_template(
            alone, obj.template, obj.centre_angstrom_xyz, obj.rotation_xyz, REAL_SPACING_ZYX, obj.scale, obj.amplitude
        )
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in alone.shape], indexing="ij"), axis=-1)
        centroid = (grid * alone[..., None]).sum(axis=(0, 1, 2)) / alone.sum()
        assert np.linalg.norm(centroid - centre) < 0.05
    fractions = np.concatenate([c - np.round(c) for c in clean_run.picks.values()])
    assert np.abs(fractions).max() > 0.05  # picks are continuous, not on the voxel grid


def test_no_overlaps_and_inside_the_ice():
    config = SimulationConfig(shape_zyx=(96, 192, 192), crowding=2.0)
    run = simulate_run(config, seed=3)
    objects = [o for o in run.scene.objects if o.kind != "vesicle"]
    assert sum(o.is_particle for o in objects) > 10
    centres = np.array([o.centre_angstrom_xyz for o in objects])
    radii = np.array([o.radius_angstrom for o in objects])
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    assert np.all(distance >= config.min_separation_factor * (radii[:, None] + radii[None]) - 1e-6)
    for obj in objects:
        if obj.is_particle:
            z, y, x = angstrom_xyz_to_voxel_zyx(obj.centre_angstrom_xyz, REAL_SPACING_ZYX)[0]
            bottom, top = run.scene.slab.bounds(np.array(y), np.array(x))
            radius = radius_angstrom_to_voxels(obj.radius_angstrom, REAL_SPACING_ZYX)
            assert bottom + radius - 1e-6 <= z <= top - radius + 1e-6


def test_same_seed_same_bytes_other_seed_differs():
    config = small_config()
    first, second, other = (
        simulate_run(config, seed=(7, 1)),
        simulate_run(config, seed=(7, 1)),
        simulate_run(config, seed=(7, 2)),
    )
    for tomo_type in config.tomo_types:
        assert first.volumes[tomo_type].tobytes() == second.volumes[tomo_type].tobytes()
        assert not np.array_equal(first.volumes[tomo_type], other.volumes[tomo_type])
    for name in PARTICLE_NAMES:
        assert first.picks[name].tobytes() == second.picks[name].tobytes()


def test_imaging_missing_wedge_noise_and_tomo_types():
    config = small_config(tomo_types=("denoised", "wbp", "ctfdeconvolved", "isonetcorrected"))
    run = simulate_run(config, seed=5)
    wbp = run.volumes["wbp"]
    assert set(run.volumes) == set(config.tomo_types)
    kz, _, kx = fourier_grid(wbp.shape, REAL_SPACING_ZYX)
    power = np.abs(scipy.fft.rfftn(wbp)) ** 2
    in_wedge = np.broadcast_to(np.abs(kz) > np.tan(np.radians(61)) * np.abs(kx), power.shape)
    assert power[in_wedge].sum() < 1e-6 * power.sum()
    roughness = {t: np.std(np.diff(v, axis=2)) / np.std(v) for t, v in run.volumes.items()}
    assert roughness["wbp"] > 1.5 * roughness["denoised"]
    assert 0.3 * config.intensity_scale < np.std(wbp) < 10 * config.intensity_scale
    assert noise_sigma(small_config(snr=0.5)) == pytest.approx(noise_sigma(small_config(snr=2.0)) * 2)


def test_difficulty_presets_move_snr_and_crowding_together():
    easy, default, hard = (config_for_difficulty(d) for d in ("easy", "default", "hard"))
    assert easy.snr > default.snr > hard.snr
    assert easy.crowding < default.crowding < hard.crowding
    assert easy.clutter < default.clutter < hard.clutter
    assert config_for_difficulty("hard", snr=0.3).snr == 0.3
    assert SimulationConfig().count_ranges["ribosome"] == (30, 60)
    assert SimulationConfig(counts={"ribosome": 4}).count_ranges["ribosome"] == (4, 4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(counts={"ribosome": -1}), "counts"),
        (dict(counts={"ribosome": (5, 2)}), "counts"),
        (dict(counts={"not-a-particle": 1}), "unknown particle"),
        (dict(shape_zyx=(24, 40, 40)), "too small"),
        (dict(shape_zyx=(4, 64, 64)), "shape_zyx"),
        (dict(difficulty="impossible"), "difficulty"),
        (dict(snr=0.0), "snr"),
        (dict(snr=-1.0), "snr"),
        (dict(tilt_range_degrees=95), "tilt_range_degrees"),
        (dict(tomo_types=("cryo",)), "tomo_types"),
    ],
)
def test_bad_config_arguments_raise_clearly(overrides, message):
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**overrides)


def test_bad_dataset_arguments_raise_clearly(tmp_path):
    with pytest.raises(ValueError, match="split"):
        simulate_dataset(tmp_path, 1, split="validation", config=small_config())
    with pytest.raises(ValueError, match="n_runs"):
        simulate_dataset(tmp_path, 0, config=small_config())
    with pytest.raises(ValueError, match="seed"):
        simulate_run(small_config(), seed=-3)
    with pytest.raises(ValueError, match="could not place"):
        simulate_run(small_config(counts={"ribosome": 60}), seed=0)


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "sim"
    assert (
        main(
            [
                "simulate",
                "--out",
                str(out),
                "--runs",
                "1",
                "--seed",
                "9",
                "--shape",
                "64",
                "96",
                "96",
                "--difficulty",
                "easy",
                "--snr",
                "0.4",
            ]
        )
        == 0
    )
    assert "simulated 1 train runs (easy, snr 0.4" in capsys.readouterr().out
    picks = read_run_picks(out, "train", "TS_sim_9_0")
    assert isinstance(picks, pd.DataFrame)
    assert open_run_tomogram(out, "train", "TS_sim_9_0", "wbp", 2).shape_zyx == (16, 24, 24)
    assert main(["simulate", "--out", str(out), "--runs", "1", "--seed", "1", "--snr", "-2"]) == 2
