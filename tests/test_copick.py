"""The real copick package opens what cryokit writes, and cryokit reads what copick writes.

copick silently reads zeros from chunk keys it does not expect (COMPETITION.md 2.1), so these tests
compare voxel values, not only shapes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryokit.cli import main
from cryokit.io import open_run_tomogram, read_run_picks
from cryokit.particles import PARTICLE_NAMES

copick = pytest.importorskip("copick")


def _open_project(kaggle_root, tmp_path):
    root, _ = kaggle_root
    assert main(["copick-config", "--data", str(root), "--split", "train", "--out", str(tmp_path / "cp")]) == 0
    return copick.from_file(str(tmp_path / "cp" / "copick_train.json"))


def test_config_holds_the_host_objects(kaggle_root, tmp_path):
    _open_project(kaggle_root, tmp_path)
    config = json.loads((tmp_path / "cp" / "copick_train.json").read_text())
    assert config["name"] == "czii_cryoet_mlchallenge_2024"
    objects = {o["name"]: o for o in config["pickable_objects"]}
    assert [o["name"] for o in config["pickable_objects"] if o["is_particle"]] == list(PARTICLE_NAMES)
    assert objects["beta-galactosidase"]["pdb_id"] == "6X1Q" and objects["membrane"]["label"] == 8


def test_copick_reads_every_voxel_and_pick_cryokit_wrote(kaggle_root, tmp_path):
    root, written = kaggle_root
    project = _open_project(kaggle_root, tmp_path)
    assert sorted(run.name for run in project.runs) == ["TS_a", "TS_b"]
    for run in project.runs:
        voxel_spacing = run.get_voxel_spacing(10.0)
        for tomo_type in ("denoised", "wbp"):
            tomogram = voxel_spacing.get_tomogram(tomo_type)
            for level in ("0", "1"):
                ours = open_run_tomogram(root, "train", run.name, tomo_type, level=int(level)).read()
                theirs = tomogram.numpy(zarr_group=level)
                assert np.abs(theirs).max() > 0  # not the all-zero read of unexpected chunk keys
                np.testing.assert_array_equal(theirs, ours)
        expected = written[run.name][1]
        for name, centres_angstrom_xyz in expected.items():
            (picks,) = run.get_picks(object_name=name, user_id="curation")
            points_xyz, transforms = picks.numpy()
            np.testing.assert_allclose(points_xyz, centres_angstrom_xyz)
            assert transforms.shape == (len(centres_angstrom_xyz), 4, 4)


def test_cryokit_reads_picks_copick_wrote(kaggle_root, tmp_path):
    root, _ = kaggle_root
    project = _open_project(kaggle_root, tmp_path)
    run = project.get_run("TS_a")
    new_xyz = np.array([[100.0, 200.0, 50.0], [300.5, 10.25, 90.0]])
    picks = run.new_picks("beta-galactosidase", session_id="1", user_id="model")
    picks.from_numpy(new_xyz, np.tile(np.eye(4), (2, 1, 1)))
    picks.store()
    # Read the copick overlay as a Kaggle-style overlay: the copick name is parsed.
    overlay = tmp_path / "cp" / "overlay"
    layout = tmp_path / "as_kaggle" / "train"
    (layout / "static" / "ExperimentRuns" / "TS_a").mkdir(parents=True)
    (layout / "overlay").symlink_to(overlay)
    table = read_run_picks(tmp_path / "as_kaggle", "train", "TS_a")
    galactosidase = table[table.particle_type == "beta-galactosidase"][["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(galactosidase, new_xyz)
    original = read_run_picks(root, "train", "TS_a")
    assert len(table) == len(original) + 2


def test_copick_opens_a_simulated_dataset(tmp_path):
    """The simulator's output goes through cryokit copick-config into the real copick, voxel for voxel."""
    from cryokit.synth import SimulationConfig, simulate_dataset

    config = SimulationConfig(
        shape_zyx=(48, 96, 96),
        counts={
            "apo-ferritin": 3,
            "ribosome": 0,
            "virus-like-particle": 0,
            "thyroglobulin": 0,
            "beta-galactosidase": 1,
            "beta-amylase": 0,
        },
    )
    runs = simulate_dataset(tmp_path / "sim", 1, seed=3, config=config, progress=False)
    assert (
        main(["copick-config", "--data", str(tmp_path / "sim"), "--split", "train", "--out", str(tmp_path / "cp")]) == 0
    )
    project = copick.from_file(str(tmp_path / "cp" / "copick_train.json"))
    run = project.get_run(runs[0])
    tomogram = run.get_voxel_spacing(10.0).get_tomogram("wbp")
    np.testing.assert_array_equal(
        tomogram.numpy(zarr_group="0"), open_run_tomogram(tmp_path / "sim", "train", runs[0], "wbp").read()
    )
    (picks,) = run.get_picks(object_name="apo-ferritin", user_id="curation")
    ours = read_run_picks(tmp_path / "sim", "train", runs[0])
    np.testing.assert_allclose(picks.numpy()[0], ours[ours.particle_type == "apo-ferritin"][["x", "y", "z"]].to_numpy())
