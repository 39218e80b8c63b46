"""Reading and writing the Kaggle layout; every bad input names the file and what is wrong."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from conftest import REAL_SPACING_ZYX

from cryokit.io import (
    list_runs,
    open_run_tomogram,
    open_tomogram,
    read_picks,
    read_picks_file,
    read_run_picks,
    read_solution,
    tomogram_path,
    write_picks_file,
    write_tomogram,
)


def test_list_runs_and_lazy_levels(kaggle_root):
    root, written = kaggle_root
    assert list_runs(root, "train") == ["TS_a", "TS_b"]
    assert list_runs(root, "test") == ["TS_t"]
    tomo = open_run_tomogram(root, "train", "TS_a", "wbp", level=0)
    assert tomo.shape_zyx == (20, 36, 40)
    np.testing.assert_array_equal(tomo.read(), written["TS_a"][0]["wbp"])
    np.testing.assert_allclose(tomo.voxel_spacing_angstrom_zyx, REAL_SPACING_ZYX)
    region = tomo.read((slice(2, 5), slice(0, 7), slice(30, 40)))
    np.testing.assert_array_equal(region, written["TS_a"][0]["wbp"][2:5, 0:7, 30:40])


def test_levels_halve_with_ceil_and_double_spacing(kaggle_root):
    root, written = kaggle_root
    level1 = open_run_tomogram(root, "train", "TS_a", level=1)
    level2 = open_run_tomogram(root, "train", "TS_a", level=2)
    assert level1.shape_zyx == (10, 18, 20) and level2.shape_zyx == (5, 9, 10)
    np.testing.assert_allclose(level2.voxel_spacing_angstrom_zyx, np.asarray(REAL_SPACING_ZYX) * 4)
    full = written["TS_a"][0]["denoised"]
    weights = np.einsum("i,j,k->ijk", *[np.array([0.25, 0.5, 0.25])] * 3)
    np.testing.assert_allclose(level1.read()[2, 3, 4], (full[3:6, 5:8, 7:10] * weights).sum(), rtol=1e-5)


def test_coarser_levels_keep_voxel_centres(tmp_path):
    """A blob centred at level-0 voxel (10, 14, 18) is centred at (5, 7, 9) at level 1, (2.5, 3.5, 4.5) at level 2."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in (24, 32, 40)], indexing="ij")
    blob = np.exp(-((z - 10) ** 2 + (y - 14) ** 2 + (x - 18) ** 2) / (2 * 3.0**2))
    path = write_tomogram(tmp_path / "b.zarr", blob, 10.0)
    for level, expected in ((1, (5.0, 7.0, 9.0)), (2, (2.5, 3.5, 4.5))):
        data = open_tomogram(path, level).read()
        centroid = [
            (data * g).sum() / data.sum() for g in np.meshgrid(*[np.arange(n) for n in data.shape], indexing="ij")
        ]
        np.testing.assert_allclose(centroid, expected, atol=0.05)


def test_spacing_comes_from_zattrs_not_the_folder_name(tmp_path):
    path = write_tomogram(tmp_path / "t.zarr", np.zeros((4, 4, 4)), (7.5, 8.0, 8.5))
    np.testing.assert_allclose(open_tomogram(path).voxel_spacing_angstrom_zyx, [7.5, 8.0, 8.5])


def test_store_uses_nested_chunk_keys(tmp_path):
    path = write_tomogram(tmp_path / "t.zarr", np.ones((8, 8, 8)), 10.0, chunks_zyx=(4, 4, 4))
    assert json.loads((path / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    assert (path / "0" / "1" / "1" / "1").is_file()
    attrs = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert [d["path"] for d in attrs["datasets"]] == ["0", "1", "2"]
    assert [a["name"] for a in attrs["axes"]] == ["z", "y", "x"]


def test_rewrite_replaces_store_only_when_complete(tmp_path):
    path = write_tomogram(tmp_path / "t.zarr", np.full((4, 4, 4), 3.0), 10.0)
    with pytest.raises(ValueError, match="NaN"):
        write_tomogram(path, np.full((4, 4, 4), np.nan), 10.0)
    assert open_tomogram(path).read().mean() == 3.0
    assert [p.name for p in tmp_path.iterdir()] == ["t.zarr"]  # no temporary left behind


def test_picks_table_in_angstrom_xyz(kaggle_root):
    root, written = kaggle_root
    picks = read_run_picks(root, "train", "TS_b")
    assert list(picks.columns) == ["experiment", "particle_type", "x", "y", "z"]
    ribosome = picks[picks.particle_type == "ribosome"][["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(ribosome, written["TS_b"][1]["ribosome"])
    solution = read_solution(root, "train")
    assert list(solution.columns) == ["id", "experiment", "particle_type", "x", "y", "z"]
    assert len(solution) == 2 * (4 + 2 + 3) and solution["id"].is_unique
    assert set(read_picks(root, "train", runs=["TS_a"]).experiment) == {"TS_a"}


def test_copick_style_file_names_are_read(tmp_path):
    path = write_picks_file(
        tmp_path / "Picks" / "user_7_beta-galactosidase.json",
        "beta-galactosidase",
        "r",
        np.array([[1.0, 2.0, 3.0]]),
        user_id="user",
        session_id="7",
    )
    name, centres = read_picks_file(path)
    assert name == "beta-galactosidase" and centres.tolist() == [[1.0, 2.0, 3.0]]
    document = json.loads(path.read_text())
    assert document["unit"] == "angstrom" and document["points"][0]["transformation_"][3] == [0, 0, 0, 1]


# --- bad input: each message names the file and the problem -------------------------------------


def test_missing_run_lists_known_runs(kaggle_root):
    root, _ = kaggle_root
    with pytest.raises(FileNotFoundError, match=r"run 'TS_zz' not found.*TS_a, TS_b"):
        open_run_tomogram(root, "train", "TS_zz")


def test_missing_tomo_type_lists_available(kaggle_root):
    root, _ = kaggle_root
    with pytest.raises(FileNotFoundError, match=r"no tomo type 'isonetcorrected'.*denoised, wbp"):
        open_run_tomogram(root, "train", "TS_a", "isonetcorrected")


def test_missing_level_names_the_store(kaggle_root):
    root, _ = kaggle_root
    with pytest.raises(FileNotFoundError, match=r"denoised.zarr has no level 3 \(levels: 0, 1, 2\)"):
        open_run_tomogram(root, "train", "TS_a", level=3)


def test_wrong_voxel_spacing_folder(kaggle_root):
    root, _ = kaggle_root
    run_dir = root / "train" / "static" / "ExperimentRuns" / "TS_a"
    (run_dir / "VoxelSpacing10.000").rename(run_dir / "VoxelSpacing10.012")
    with pytest.raises(FileNotFoundError, match=r"VoxelSpacing10.000 does not exist.*found VoxelSpacing10.012"):
        tomogram_path(root, "train", "TS_a")


def test_nan_tomogram_is_refused_on_read(tmp_path):
    volume = np.zeros((4, 4, 4), np.float32)
    path = write_tomogram(tmp_path / "t.zarr", volume, 10.0)
    # Corrupt the store after writing, as a broken download would.
    import zarr

    zarr.open_array(str(path / "0"), mode="r+")[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"t.zarr level 0 holds 1 NaN"):
        open_tomogram(path).read()


def test_missing_zattrs(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(FileNotFoundError, match=r"x.zarr/.zattrs does not exist"):
        open_tomogram(tmp_path / "x.zarr")


@pytest.mark.parametrize(
    "filename, content, message",
    [
        ("ferritin.json", {"points": []}, r"ferritin.json: 'ferritin' names no known particle type"),
        ("ribosome.json", "{not json", r"ribosome.json is not valid JSON"),
        ("ribosome.json", {"pickable_object_name": "ribosome"}, r"ribosome.json has no 'points' list"),
        ("ribosome.json", {"points": [{"location": {"x": 1, "y": 2}}]}, r"ribosome.json: point 0 has no numeric"),
        (
            "x.json",
            {"pickable_object_name": "prion", "points": []},
            r"unknown particle type 'prion' in picks file .*x.json",
        ),
    ],
)
def test_bad_picks_files(tmp_path, filename, content, message):
    path = tmp_path / filename
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=message):
        read_picks_file(path)


def test_empty_points_is_logged_not_fatal(tmp_path, caplog):
    path = tmp_path / "ribosome.json"
    path.write_text(json.dumps({"pickable_object_name": "ribosome", "points": []}))
    with caplog.at_level(logging.WARNING):
        name, centres = read_picks_file(path)
    assert name == "ribosome" and centres.shape == (0, 3)
    assert "has no points" in caplog.text and "ribosome.json" in caplog.text


def test_two_files_for_one_particle_is_an_error(kaggle_root):
    root, _ = kaggle_root
    picks_dir = root / "train" / "overlay" / "ExperimentRuns" / "TS_a" / "Picks"
    shutil.copy(picks_dir / "ribosome.json", picks_dir / "curation_0_ribosome.json")
    with pytest.raises(ValueError, match=r"two picks files for ribosome"):
        read_run_picks(root, "train", "TS_a")


def test_missing_data_root_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data root .*nowhere does not exist"):
        list_runs(tmp_path / "nowhere", "train")
    (tmp_path / "d").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no 'test' split"):
        list_runs(tmp_path / "d", "test")
    with pytest.raises(ValueError, match=r"split must be one of"):
        list_runs(tmp_path / "d", "val")


def test_flat_chunk_keys_are_read_too(tmp_path):
    """A store written with zarr 2's default '.' chunk keys (0/0.1.2) reads the same values."""
    import zarr

    volume = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    path = tmp_path / "flat.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_dataset("0", data=volume, chunks=(4, 4, 4), dimension_separator=".")
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [10.0, 10.0, 10.0]}]}],
        }
    ]
    assert (path / "0" / "1.1.1").is_file()
    np.testing.assert_array_equal(open_tomogram(path).read(), volume)
