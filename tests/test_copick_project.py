"""cryokit on a copick project that is not the Kaggle layout, through the real copick package and its CLI.

The project: MRC tomograms written with mrcfile and added with ``copick add tomogram`` at 13.48 A (not 10),
pickable objects ``apo-ferritin`` and ``bright-blob`` (not a competition particle, score weight 2 in its
metadata) plus a non-particle membrane; ground truth by ``curator/0`` and someone else's picks that must
stay untouched. Trained with a tiny U-Net, predicted, written back as copick picks, exported by
``copick export picks --output-format star`` and read back with starfile, compared in Angstrom.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryokit.cli import main
from cryokit.io.source import CopickSource, MissingCopickData
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog

copick = pytest.importorskip("copick")
mrcfile = pytest.importorskip("mrcfile")
starfile = pytest.importorskip("starfile")

SPACING = 13.48  # Angstrom: not the competition's 10
RUNS = ("TS_a", "TS_b", "TS_c")
SHAPE_ZYX = (24, 64, 64)
# name, radius in voxels, intensity: bright balls of the new object, dark balls of apo-ferritin
BALLS = (("bright-blob", 3.0, 2.0), ("apo-ferritin", 4.5, -2.0))
OBJECTS = [
    {"name": "apo-ferritin", "is_particle": True, "label": 1, "color": [0, 117, 220, 128], "radius": 60.0},
    {
        "name": "bright-blob",
        "is_particle": True,
        "label": 2,
        "color": [200, 30, 30, 255],
        "radius": 3.0 * SPACING,
        "metadata": {"score_weight": 2},
    },
    {"name": "membrane", "is_particle": False, "label": 3, "color": [100, 100, 100, 128]},
]
TRAIN_YAML = """
data: {val_runs: [TS_c]}
patch: {size_zyx: [16, 32, 32], batch_size: 2, patches_per_epoch: 16, inference_batch_size: 4}
model: {channels: [8, 16], strides: [2], num_res_units: 0}
augment: {rotate_degrees: 0, scale_fraction: 0, elastic_p: 0}
loss: {particle_weight: 4.0}
train: {epochs: 6, lr: 0.01, warmup_steps: 1}
tracking: {enabled: false}
"""


def _copick_cli(*args: str) -> subprocess.CompletedProcess:
    executable = Path(sys.executable).parent / "copick"
    result = subprocess.run([str(executable), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"copick {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _write_config(path: Path, root: Path, objects: list[dict]) -> Path:
    config = {
        "config_type": "filesystem",
        "name": "a lab project",
        "description": "MRC tomograms added with copick add tomogram",
        "version": "1.0.0",
        "pickable_objects": objects,
        "overlay_root": f"local://{root / 'overlay'}",
        "overlay_fs_args": {"auto_mkdir": True},
        "static_root": f"local://{root / 'static'}",
        "static_fs_args": {"auto_mkdir": True},
    }
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(config path, ground truth {run: {object: (N, 3) Angstrom x, y, z}}, other user's picks file bytes)."""
    root = tmp_path_factory.mktemp("copick_project")
    (root / "static").mkdir()
    config = _write_config(root / "config.json", root, OBJECTS)
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE_ZYX], indexing="ij"), axis=-1)
    truth = {}
    (root / "mrc").mkdir()
    for run in RUNS:
        volume = rng.normal(scale=0.3, size=SHAPE_ZYX).astype(np.float32)
        truth[run] = {}
        for name, radius_voxels, value in BALLS:
            centres_zyx = rng.uniform([6, 8, 8], np.asarray(SHAPE_ZYX) - [6, 8, 8], size=(6, 3))
            for centre in centres_zyx:
                inside = np.linalg.norm(grid - centre, axis=-1) <= radius_voxels
                volume[inside] = value + rng.normal(scale=0.3, size=int(inside.sum()))
            truth[run][name] = centres_zyx[:, ::-1] * SPACING  # voxel z, y, x -> Angstrom x, y, z
        with mrcfile.new(root / "mrc" / f"{run}.mrc") as mrc:
            mrc.set_data(volume)
            mrc.voxel_size = SPACING
    _copick_cli(
        "add", "tomogram", str(root / "mrc" / "*.mrc"), "-c", str(config), "--tomo-type", "wbp",
        "--voxel-size", str(SPACING), "--chunk-size", "32,32,32",
    )  # fmt: skip
    cp = copick.from_file(str(config))
    for run in RUNS:
        for name, xyz in truth[run].items():
            picks = cp.get_run(run).new_picks(name, "0", "curator")
            picks.from_numpy(xyz, np.tile(np.eye(4), (len(xyz), 1, 1)))
            picks.store()
    other = cp.get_run("TS_a").new_picks("bright-blob", "7", "someone")
    other.from_numpy(np.array([[1.0, 2.0, 3.0]]), np.eye(4)[None])
    other.store()
    others = {p: p.read_bytes() for p in (root / "overlay").rglob("someone_*.json")}
    assert others, "copick wrote someone's picks somewhere else than expected"
    return config, truth, others


def test_catalog_from_a_copick_project(project):
    config, _, _ = project
    catalog = CopickSource(str(config), SPACING).catalog()
    assert catalog.names == ("apo-ferritin", "bright-blob")  # the membrane is not a particle
    assert catalog.get("bright-blob").weight == 2.0  # metadata.score_weight
    assert catalog.get("apo-ferritin").weight == 1  # the competition's weight for its name
    assert catalog.total_weight == 3.0 and catalog != COMPETITION_CATALOG
    assert ParticleCatalog.from_records(catalog.to_records()) == catalog


def test_catalog_weights_from_octopi_metadata_and_default(tmp_path):
    objects = [
        {"name": "thing", "is_particle": True, "label": 1, "radius": 50.0, "metadata": {"weight": 0.5}},
        {"name": "beta-amylase", "is_particle": True, "label": 2, "radius": 65.0},
        {"name": "plain", "is_particle": True, "label": 3, "radius": 70.0},
    ]
    root = copick.from_file(str(_write_config(tmp_path / "c.json", tmp_path, objects)))
    catalog = ParticleCatalog.from_copick(root)
    assert [p.weight for p in catalog] == [0.5, 0, 1.0]
    assert catalog.scored_names == ("thing", "plain")


def test_copick_source_reads_tomograms_and_picks_through_copick(project):
    config, truth, _ = project
    source = CopickSource(str(config), SPACING, "curator", "0")
    assert source.list_runs() == list(RUNS)
    tomogram = source.open_tomogram("TS_b", "wbp")
    assert tomogram.shape_zyx == SHAPE_ZYX
    np.testing.assert_allclose(tomogram.voxel_spacing_angstrom_zyx, [SPACING] * 3, rtol=1e-6)
    with mrcfile.open(Path(config).parent / "mrc" / "TS_b.mrc") as mrc:
        np.testing.assert_array_equal(tomogram.read(), mrc.data)
    np.testing.assert_allclose(
        source.open_tomogram("TS_b", "wbp", level=1).voxel_spacing_angstrom_zyx, [2 * SPACING] * 3
    )
    picks = source.read_picks(["TS_a"])
    blob = picks[picks.particle_type == "bright-blob"][["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(blob, truth["TS_a"]["bright-blob"])
    assert "someone" not in set(picks.get("user", []))  # someone else's session is not read
    assert len(picks) == 12


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda c: CopickSource(c, 0.0), "no voxel spacing given"),
        (lambda c: CopickSource(c, 99.0).open_tomogram("TS_a", "wbp"), "has no voxel spacing 99 A (it has 13.48)"),
        (lambda c: CopickSource(c, SPACING).open_tomogram("TS_a", "denoised"), "no tomogram of type 'denoised'"),
        (
            lambda c: CopickSource(c, SPACING, "curator", "42").read_picks(),
            "no picks by user 'curator' in session '42'",
        ),
        (lambda c: CopickSource(c, SPACING).read_picks(), "no picks user given"),
    ],
)
def test_named_errors(project, make, message):
    config, _, _ = project
    with pytest.raises(MissingCopickData) as caught:
        make(str(config))
    assert message in str(caught.value)


def test_config_to_train_to_copick_picks_to_star(project, tmp_path, capsys):
    config, truth, others = project
    (tmp_path / "run.yaml").write_text(TRAIN_YAML)
    copick_args = ["--copick", str(config), "--voxel-spacing", str(SPACING), "--tomo-type", "wbp"]
    train = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), *copick_args]
    assert main([*train, "--pick-user", "curator", "--pick-session", "0"]) == 0
    assert "best validation score" in capsys.readouterr().out

    from cryokit.training.checkpoint import load_checkpoint, load_model

    state = load_checkpoint(tmp_path / "run" / "best.pt")
    assert [r["name"] for r in state["catalog"]] == ["apo-ferritin", "bright-blob"]
    loaded = load_model(tmp_path / "run" / "best.pt")
    assert loaded.catalog.names == ("apo-ferritin", "bright-blob") and loaded.task.n_outputs == 3  # + background

    predict = ["predict", "--checkpoint", str(tmp_path / "run" / "best.pt"), *copick_args]
    assert main([*predict, "--out", str(tmp_path / "sub.csv"), "--write-picks", "cryokit/1"]) == 0
    assert "copick picks files of session cryokit/1" in capsys.readouterr().out

    # copick sees one picks file per run and object, with the scores kept
    cp = copick.from_file(str(config))
    submission = pd.read_csv(tmp_path / "sub.csv")
    assert set(submission["particle_type"]) <= {"apo-ferritin", "bright-blob"}
    written = []
    for run in RUNS:
        mine = cp.get_run(run).get_picks(user_id="cryokit", session_id="1")
        assert sorted(p.pickable_object_name for p in mine) == ["apo-ferritin", "bright-blob"]
        for picks in mine:
            rows = submission[(submission.experiment == run) & (submission.particle_type == picks.pickable_object_name)]
            points_xyz = picks.numpy()[0] if picks.points else np.zeros((0, 3))
            np.testing.assert_allclose(np.sort(points_xyz, axis=0), np.sort(rows[["x", "y", "z"]].to_numpy(), axis=0))
            written.append(picks.scores())
    scores = np.concatenate(written)
    assert len(scores) == len(submission) > 0 and scores.min() < 1.0  # model scores, not copick's default 1
    assert {p: p.read_bytes() for p in others} == others  # someone else's session untouched

    # the score on the project's own catalog: bright-blob weighs 2 of 3
    assert main(["score", "--submission", str(tmp_path / "sub.csv"), "--runs", "TS_c", *copick_args[:4],
                 "--pick-user", "curator", "--pick-session", "0"]) == 0  # fmt: skip
    scored = capsys.readouterr().out
    assert "bright-blob" in scored and "ribosome" not in scored
    assert float(scored.strip().splitlines()[-1].split()[-1]) > 0.5

    # an ensemble fitted on the project's validation picks keeps its catalog, and predicts with it
    ensemble_file = tmp_path / "ensemble.json"
    assert main(["ensemble", "--checkpoint", str(tmp_path / "run" / "best.pt"), *copick_args[:4], "--pick-user",
                 "curator", "--pick-session", "0", "--runs", "TS_c", "--out", str(ensemble_file)]) == 0  # fmt: skip
    assert "bright-blob" in capsys.readouterr().out
    from cryokit.ensemble import load_ensemble

    assert load_ensemble(ensemble_file).catalog.names == ("apo-ferritin", "bright-blob")
    assert main([*predict, "--ensemble", str(ensemble_file), "--out", str(tmp_path / "ens.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "ens.csv")["particle_type"]) <= {"apo-ferritin", "bright-blob"}
    capsys.readouterr()

    # the session exists now: refused unless asked, replaced when asked
    assert main([*predict, "--write-picks", "cryokit/1"]) == 2
    assert "picks session cryokit/1 already exists" in capsys.readouterr().err
    assert main([*predict, "--write-picks", "cryokit/1", "--overwrite-picks"]) == 0

    # copick's own export to RELION 5 STAR, read back with starfile, in Angstrom
    star = tmp_path / "particles.star"
    _copick_cli(
        "export", "picks", "-c", str(config), "--picks-uri", "*:cryokit/1", "--output-file", str(star),
        "--output-format", "star", "--voxel-size", str(SPACING), "--tomo-type", "wbp", "--coordinates", "centered",
    )  # fmt: skip
    table = starfile.read(star)
    particles = table["particles"] if isinstance(table, dict) else table
    centre_xyz = np.asarray(SHAPE_ZYX[::-1], dtype=float) / 2 * SPACING  # RELION: half the tomogram size
    exported = particles[[f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]].to_numpy() + centre_xyz
    assert len(exported) == len(submission)
    for run in RUNS:
        ours = submission[submission.experiment == run][["x", "y", "z"]].to_numpy()
        theirs = exported[(particles["rlnTomoName"] == run).to_numpy()]
        np.testing.assert_allclose(np.sort(theirs, axis=0), np.sort(ours, axis=0), atol=1e-3)
    hits = np.linalg.norm(exported[:, None, :] - np.concatenate([truth[r]["bright-blob"] for r in RUNS])[None], axis=2)
    assert (hits.min(axis=0) < 0.5 * 3.0 * SPACING).mean() > 0.5  # most bright blobs found, in Angstrom


def test_predicting_other_objects_is_an_error_naming_them(project, tmp_path, capsys):
    config, _, _ = project
    (tmp_path / "run.yaml").write_text(TRAIN_YAML.replace("epochs: 6", "epochs: 1"))
    copick_args = ["--copick", str(config), "--voxel-spacing", str(SPACING), "--tomo-type", "wbp"]
    train = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), *copick_args]
    assert main([*train, "--pick-user", "curator", "--pick-session", "0"]) == 0
    other_objects = [dict(OBJECTS[0]), {**OBJECTS[1], "name": "dim-blob"}]
    other = _write_config(tmp_path / "other.json", Path(config).parent, other_objects)
    predict = ["predict", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--copick", str(other)]
    predict += [
        "--voxel-spacing",
        str(SPACING),
        "--tomo-type",
        "wbp",
        "--runs",
        "TS_c",
        "--out",
        str(tmp_path / "s.csv"),
    ]
    capsys.readouterr()
    assert main(predict) == 2
    error = capsys.readouterr().err
    assert "bright-blob" in error and "dim-blob" in error and "--map-objects" in error
    assert main([*predict, "--map-objects", "--write-picks", "mapped/1"]) == 0
    assert set(pd.read_csv(tmp_path / "s.csv")["particle_type"]) <= {"apo-ferritin"}
    written = copick.from_file(str(other)).get_run("TS_c").get_picks(user_id="mapped", session_id="1")
    assert [p.pickable_object_name for p in written] == ["apo-ferritin"]  # no empty file for dim-blob


def test_baseline_on_a_copick_project(project, tmp_path, capsys):
    config, _, _ = project
    argv = ["baseline", "--copick", str(config), "--voxel-spacing", str(SPACING), "--tomo-type", "wbp"]
    argv += ["--pick-user", "curator", "--pick-session", "0", "--level", "0", "--out", str(tmp_path / "b.csv")]
    assert main(argv) == 0
    assert "bright-blob" in capsys.readouterr().out  # the calibration table lists the project's objects
    assert set(pd.read_csv(tmp_path / "b.csv")["particle_type"]) <= {"apo-ferritin", "bright-blob"}


def test_notebook_parameters_take_a_copick_project(project, tmp_path):
    from cryokit.demo.notebooks import notebook_training_config, train_and_report

    config, _, _ = project
    copick_parameters = {"config": str(config), "voxel_spacing": SPACING, "tomo_type": "wbp"}
    copick_parameters.update({"pick_user": "curator", "pick_session": "0"})
    run_config = notebook_training_config(
        "unet", None, tmp_path / "nb", None, copick=copick_parameters, level=0, patch_size_zyx=(16, 32, 32),
        batch_size=2, patches_per_epoch=8, epochs=1, track=False,
        overrides={"model.channels": [4, 8, 8], "model.strides": [2, 2], "patch.inference_overlap": 0.0},
    )  # fmt: skip
    assert run_config.data.copick == str(config) and run_config.data.val_runs == ("TS_c",)
    report = train_and_report(run_config, progress=False)
    assert list(report.val_table["particle_type"]) == ["apo-ferritin", "bright-blob"]
    assert report.files["predictions_png"].is_file()


def test_curves_follow_the_catalog():
    import matplotlib.pyplot as plt

    from cryokit.plots.training import plot_training_curves

    catalog = ParticleCatalog.from_records(
        [{"name": "bright-blob", "radius_angstrom": 40.0, "weight": 2.0, "label": 1, "color_rgba": [200, 0, 0, 255]}]
    )
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_score": 0.5, "val_f4/bright-blob": 0.4} for e in (1, 2)]
    figure = plot_training_curves(history, catalog=catalog)
    labels = [line.get_label() for line in figure.axes[1].get_lines()]
    plt.close(figure)
    assert "bright-blob" in labels

    from cryokit.plots.eda import particle_counts_table, plot_nearest_neighbour_distances

    picks = pd.DataFrame(
        {"experiment": ["TS_a"] * 3, "particle_type": ["bright-blob"] * 3, "x": [0.0, 50, 400], "y": 0.0, "z": 0.0}
    )
    assert list(particle_counts_table(picks, catalog).columns) == ["bright-blob", "total"]
    figure = plot_nearest_neighbour_distances(picks, catalog=catalog)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    plt.close(figure)
    assert titles == ["bright-blob (n = 3)"]


def test_a_failed_write_leaves_no_partial_session(project, monkeypatch):
    from cryokit.io.copick_picks import parse_picks_session, write_copick_picks

    config, _, _ = project
    source = CopickSource(str(config), SPACING)
    picks = pd.DataFrame(
        {"experiment": ["TS_a", "TS_b"], "particle_type": ["bright-blob"] * 2, "x": 1.0, "y": 2.0, "z": 3.0}
    )
    calls = {"n": 0}
    original = copick.models.CopickPicks.from_numpy

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(copick.models.CopickPicks, "from_numpy", failing)
    session = parse_picks_session("cryokit/partial")
    with pytest.raises(OSError, match="disk full"):
        write_copick_picks(source, picks, ["TS_a", "TS_b"], session, source.catalog())
    fresh = copick.from_file(str(config))
    assert not [p for run in RUNS for p in fresh.get_run(run).get_picks(user_id="cryokit", session_id="partial")]
    with pytest.raises(ValueError, match="USER/SESSION"):
        parse_picks_session("cryokit_1")
