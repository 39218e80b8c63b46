"""The simulator as a family of domains: draws in range and deterministic, the fixed domain unchanged,
families held out, every clutter kind and reconstruction style visible, variants true to size and
symmetry, particles' centres on their density, simulation.json beside each run."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from cryokit.cli import main
from cryokit.coords import angstrom_xyz_to_voxel_zyx, radius_angstrom_to_voxels
from cryokit.demo.pipeline import DemoConfig
from cryokit.particles import PARTICLE_NAMES, particle
from cryokit.synth import SimulationConfig, simulate_dataset, simulate_run
from cryokit.synth.domains import CLUTTER_KINDS, RECON_STYLES, DomainRanges, draw_domain, parse_family
from cryokit.synth.shapes import evaluate_template, particle_template, template_extent_angstrom
from cryokit.synth.simulate import SIMULATION_JSON, draw_run_domain

ONE_EACH = {name: 1 for name in PARTICLE_NAMES}
# What main (before domains) made of this config and seed: sha256 of the four volumes, then the picks.
FIXED_CHECKSUM = "b7f33e62f69f176ce92c9f254bf0ddaccfefaf2fbc25af9a1cfd126f7ac9e4c0"


def randomized(ranges: DomainRanges | None = None, **overrides) -> SimulationConfig:
    """A small randomized config: 64 x 96 x 96, one particle of each type, a little clutter."""
    knobs = dict(
        shape_zyx=(64, 96, 96),
        counts=ONE_EACH,
        scale_counts_to_shape=False,
        n_vesicles=(1, 1),
        n_debris=(4, 4),
        n_gold=(1, 1),
        domain="randomized",
        domain_ranges=ranges or DomainRanges(),
    )
    knobs.update(overrides)
    return SimulationConfig(**knobs)


def test_fixed_domain_gives_the_bytes_of_the_simulator_before_domains():
    config = SimulationConfig(
        shape_zyx=(64, 96, 96),
        counts={name: 2 for name in PARTICLE_NAMES},
        scale_counts_to_shape=False,
        n_vesicles=(1, 2),
        n_debris=(6, 6),
        n_gold=(1, 1),
        ice_thickness_fraction=(0.75, 0.9),
        snr=2.0,
        tomo_types=("denoised", "wbp", "ctfdeconvolved", "isonetcorrected"),
        domain="fixed",
    )
    run = simulate_run(config, seed=(3, 1))
    digest = hashlib.sha256()
    for tomo_type in config.tomo_types:
        digest.update(run.volumes[tomo_type].tobytes())
    for name in PARTICLE_NAMES:
        digest.update(run.picks[name].tobytes())
    assert digest.hexdigest() == FIXED_CHECKSUM
    assert run.domain is None and run.record["domain"] == "fixed"


def test_draws_stay_in_their_ranges():
    ranges = DomainRanges()
    rng = np.random.default_rng(0)
    draws = [draw_domain(ranges, rng) for _ in range(300)]
    for knob in DomainRanges.range_knobs():
        values = np.array([getattr(d, knob) for d in draws])
        lo, hi = getattr(ranges, knob)
        assert values.min() >= lo and values.max() <= hi, knob
        assert values.max() - values.min() > 0.5 * (hi - lo), f"{knob} does not spread over its range"
    assert {d.recon_style for d in draws} == set(RECON_STYLES)
    assert {k for d in draws for k in d.clutter_kinds} == set(CLUTTER_KINDS)
    assert all(set(d.variant_of) == set(PARTICLE_NAMES) for d in draws)
    assert {v for d in draws for v in d.variant_of.values()} == {0, 1, 2}


def test_a_run_uses_what_it_drew_and_records_it(tmp_path):
    config = randomized()
    run = simulate_run(config, seed=(5, 0))
    drawn = draw_run_domain(config, (5, 0))
    assert run.domain == drawn
    assert run.record["parameters"] == drawn.to_dict()
    kinds = {o.kind for o in run.scene.objects}
    assert ("gold" in kinds) == ("gold" in drawn.clutter_kinds)
    assert (run.scene.carbon is not None) == ("carbon" in drawn.clutter_kinds)
    for o in run.scene.objects:
        if o.is_particle:
            assert o.template in {particle_template(o.kind, drawn.variant_of[o.kind], c / 7) for c in range(8)}


def test_randomized_runs_are_deterministic_and_differ_between_seeds():
    config = randomized()
    first, again, other = simulate_run(config, seed=(1, 2)), simulate_run(config, seed=(1, 2)), simulate_run(config, 7)
    assert first.volumes["denoised"].tobytes() == again.volumes["denoised"].tobytes()
    assert first.volumes["wbp"].tobytes() == again.volumes["wbp"].tobytes()
    assert first.domain == again.domain and first.domain != other.domain
    assert not np.array_equal(first.volumes["denoised"], other.volumes["denoised"])


FAMILIES = ["recon_style=wbp", "defocus_um=4:5", "variant.thyroglobulin=1", "clutter=carbon", "snr=0.07:0.1"]


@pytest.mark.parametrize("family", FAMILIES)
def test_held_out_families_are_excluded_and_exclusive(family):
    rng = np.random.default_rng(1)
    train, test = DomainRanges().without(family), DomainRanges().only(family)
    assert not any(draw_domain(train, rng).in_family(family) for _ in range(200))
    assert all(draw_domain(test, rng).in_family(family) for _ in range(200))
    assert sum(draw_domain(DomainRanges(), rng).in_family(family) for _ in range(200)) > 10


def test_one_family_per_class_and_combined_families():
    per_class = [f"variant.{name}=2" for name in PARTICLE_NAMES]
    held_out = ["recon_style=median", "defocus_um=4.2:5", *per_class]
    train, test = DomainRanges().without(*held_out), DomainRanges().only(*held_out)
    rng = np.random.default_rng(2)
    for _ in range(100):
        t, h = draw_domain(train, rng), draw_domain(test, rng)
        assert not any(t.in_family(f) for f in held_out)
        assert all(h.in_family(f) for f in held_out)


@pytest.mark.parametrize(
    ("call", "family", "message"),
    [
        ("without", "defocus_um=2:3", "split the range"),
        ("without", "defocus_um=0:9", "nothing is left"),
        ("only", "defocus_um=8:9", "does not overlap"),
        ("without", "colour=1", "unknown knob"),
        ("without", "recon_style=sharpen", "recon_style must be one of"),
        ("without", "variant.ribosome=5", "INDEX in 0..2"),
        ("only", "defocus_um", "knob=value"),
    ],
)
def test_bad_families_are_named(call, family, message):
    with pytest.raises(ValueError, match=message):
        getattr(DomainRanges(), call)(family)


def test_the_last_choice_cannot_be_held_out():
    only_wbp = DomainRanges().only("recon_style=wbp")
    with pytest.raises(ValueError, match="only choice left"):
        only_wbp.without("recon_style=wbp")
    assert parse_family("defocus_um=4:5") == ("defocus_um", (4.0, 5.0))


@pytest.mark.parametrize(
    "overrides",
    [{"defocus_um": (3.0, 2.0)}, {"snr": (0.0, 0.1)}, {"recon_styles": ()}, {"variants": {"ribosome": (3,)}}],
)
def test_bad_ranges_are_named(overrides):
    with pytest.raises(ValueError, match="DomainRanges"):
        DomainRanges(**overrides)
    with pytest.raises(ValueError, match="domain must be one of"):
        SimulationConfig(domain="mixed")


@pytest.fixture(scope="module")
def base_draw():
    """A draw with no clutter, no streaks and white noise: each test turns one thing on."""
    drawn = draw_run_domain(randomized(), (9, 9))
    return dataclasses.replace(
        drawn, clutter_kinds=(), recon_style="gaussian", n_membranes=2.0, carbon_fraction=0.2, noise_colour=0.0
    )


@pytest.mark.parametrize("kind", CLUTTER_KINDS)
def test_every_clutter_kind_changes_the_volume(kind, base_draw):
    config = randomized(n_vesicles=(2, 2), n_gold=(2, 2), n_debris=(6, 6))
    without = simulate_run(config, seed=3, keep_density=True, domain=base_draw)
    with_kind = simulate_run(
        config, seed=3, keep_density=True, domain=dataclasses.replace(base_draw, clutter_kinds=(kind,))
    )
    placed = {o.kind for o in with_kind.scene.objects}
    present = {
        "membrane": bool(with_kind.scene.membranes),
        "carbon": with_kind.scene.carbon is not None,
        "vesicle": "vesicle" in placed,
        "gold": "gold" in placed,
        "debris": "debris" in placed,
    }
    assert present[kind] and not any(v for k, v in present.items() if k != kind)
    assert without.scene.membranes == () and without.scene.carbon is None
    assert not {"vesicle", "gold", "debris"} & {o.kind for o in without.scene.objects}
    extra = with_kind.density_zyx.sum() - without.density_zyx.sum()
    assert extra > 50.0, f"{kind} added only {extra:.1f} to the density"
    assert not np.allclose(with_kind.volumes["denoised"], without.volumes["denoised"])


def test_every_reconstruction_style_changes_the_volume(base_draw):
    config = randomized()
    runs = {
        style: simulate_run(config, seed=4, domain=dataclasses.replace(base_draw, recon_style=style))
        for style in RECON_STYLES
    }
    denoised = {style: run.volumes["denoised"] for style, run in runs.items()}
    for i, a in enumerate(RECON_STYLES):
        for b in RECON_STYLES[i + 1 :]:
            difference = np.std(denoised[a] - denoised[b]) / np.std(denoised[a])
            assert difference > 0.05, f"{a} and {b} give nearly the same denoised volume"
    wbp = [run.volumes["wbp"] for run in runs.values()]
    assert all(np.array_equal(wbp[0], w) for w in wbp[1:])  # the style changes denoised only


def test_streaks_tilt_axis_and_noise_colour_change_the_volume(base_draw):
    config = randomized()
    base = simulate_run(config, seed=4, domain=base_draw).volumes["wbp"]
    for change in (
        {"streak_strength": 1.0},
        {"tilt_axis_degrees": base_draw.tilt_axis_degrees + 20},
        {"noise_colour": 0.6},
    ):
        changed = simulate_run(config, seed=4, domain=dataclasses.replace(base_draw, **change)).volumes["wbp"]
        assert np.std(changed - base) > 0.05 * np.std(base), change


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_particle_centres_hold_density_in_every_variant(variant):
    families = [f"variant.{name}={variant}" for name in PARTICLE_NAMES]
    run = simulate_run(randomized(DomainRanges().only(*families)), seed=(6, variant), keep_density=True)
    ice = run.domain.ice_contrast
    spacing = run.voxel_spacing_angstrom_zyx
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in run.density_zyx.shape], indexing="ij"), axis=-1)
    for name, centres in run.picks.items():
        assert len(centres) == 1, name
        centre_zyx = angstrom_xyz_to_voxel_zyx(centres, spacing)[0]
        radius = radius_angstrom_to_voxels(particle(name).radius_angstrom, spacing)
        distance = np.sqrt(np.sum((grid - centre_zyx) ** 2, axis=-1))
        assert run.density_zyx[distance <= radius].mean() > ice + 0.05, f"{name} variant {variant}: an empty ball"
        # Solid complexes are dense within half their radius of the pick; hollow ones on their shell.
        core = distance <= (radius if name in ("apo-ferritin", "virus-like-particle") else 0.5 * radius)
        assert run.density_zyx[core].max() > ice + 0.3, f"{name} variant {variant}: no density near the pick"


@pytest.mark.parametrize("name", PARTICLE_NAMES)
def test_structural_variants_keep_size_and_symmetry(name):
    rng = np.random.default_rng(0)
    points = rng.uniform(-160, 160, (20000, 3)).astype(np.float32)
    radius = np.linalg.norm(points, axis=1)
    reference = particle_template(name, 0)
    ref_density = evaluate_template(reference, points)
    ref_gyration = np.sqrt(np.sum(ref_density * radius**2) / np.sum(ref_density))
    # One symmetry of the real complex the templates keep (COMPETITION.md section 4); the ribosome has none.
    symmetry = {
        "apo-ferritin": np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # octahedral: 4-fold about z
        "beta-amylase": np.diag([-1, -1, 1]),  # tetramer: 2-fold about z
        "beta-galactosidase": np.diag([-1, -1, 1]),  # D2 tetramer
        "thyroglobulin": np.diag([-1, 1, -1]),  # dimer: 2-fold about y
        "virus-like-particle": np.diag([1, -1, -1]),  # icosahedral: a 2-fold about x
    }.get(name)
    for variant in (1, 2):
        for conformation in (0.0, 1.0):
            template = particle_template(name, variant, conformation)
            density = evaluate_template(template, points)
            gyration = np.sqrt(np.sum(density * radius**2) / np.sum(density))
            assert template_extent_angstrom(template) <= 1.06 * template_extent_angstrom(reference)
            assert abs(gyration / ref_gyration - 1) < 0.15, f"{name} variant {variant}: another size"
            change = np.linalg.norm(density - ref_density) / np.linalg.norm(ref_density)
            assert change > 0.1, f"{name} variant {variant} is variant 0"
            if symmetry is not None:
                np.testing.assert_allclose(evaluate_template(template, points @ symmetry.T), density, atol=1e-4)
    with pytest.raises(ValueError, match="variant must be in"):
        particle_template(name, 3)


def test_simulation_json_beside_each_run(tmp_path):
    runs = simulate_dataset(tmp_path, 2, seed=8, config=randomized(), progress=False)
    run_dir = tmp_path / "train" / "static" / "ExperimentRuns" / runs[1]
    record = json.loads((run_dir / SIMULATION_JSON).read_text())
    assert record["domain"] == "randomized" and record["seed"] == [8, 1]
    assert record["parameters"] == draw_run_domain(randomized(), (8, 1)).to_dict()
    assert record["config"]["domain_ranges"]["defocus_um"] == [1.5, 5.0]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # written under a temporary name


def test_cli_simulate_domain(tmp_path, capsys):
    common = ["simulate", "--runs", "1", "--seed", "2", "--shape", "64", "96", "96"]
    assert main([*common, "--out", str(tmp_path / "r"), "--domain", "randomized"]) == 0
    assert "randomized" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "f"), "--domain", "fixed"]) == 0
    for folder, domain in (("r", "randomized"), ("f", "fixed")):
        path = tmp_path / folder / "train" / "static" / "ExperimentRuns" / "TS_sim_2_0" / SIMULATION_JSON
        assert json.loads(path.read_text())["domain"] == domain


def test_randomized_is_the_default_for_training_data(tmp_path):
    assert SimulationConfig().domain == "randomized"
    assert DemoConfig().domain == "randomized"  # the transfer benchmark backs it (docs/BENCHMARKS.md)
    assert DemoConfig(domain="fixed").domain == "fixed" and DemoConfig.quick_defaults().domain == "fixed"
    assert main(["simulate", "--out", str(tmp_path), "--runs", "1", "--seed", "0", "--shape", "64", "96", "96"]) == 0
    path = tmp_path / "train" / "static" / "ExperimentRuns" / "TS_sim_0_0" / SIMULATION_JSON
    assert json.loads(path.read_text())["domain"] == "randomized"
