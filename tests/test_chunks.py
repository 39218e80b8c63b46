"""A tomogram with a missing or damaged chunk is an error naming the store, the level and the chunk:
in the reader, in ``cryokit predict`` and in training (which read through the same code)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_kaggle_layout

from cryokit.cli import main
from cryokit.io import open_tomogram, write_tomogram
from cryokit.io.layout import tomogram_path


@pytest.fixture
def store(tmp_path):
    volume = np.random.default_rng(0).normal(size=(8, 12, 12)).astype(np.float32)
    return write_tomogram(tmp_path / "t.zarr", volume, 10.0, chunks_zyx=(4, 4, 4)), volume


def test_a_whole_store_reads_back_exactly_in_any_region(store):
    path, volume = store
    tomogram = open_tomogram(path)
    np.testing.assert_array_equal(tomogram.read(), volume)
    region = (slice(1, 7), slice(3, 11), slice(0, 5))
    np.testing.assert_array_equal(tomogram.read(region), volume[region])
    np.testing.assert_array_equal(
        open_tomogram(path, level=1).array[::2, 1:, :], open_tomogram(path, 1).read()[::2, 1:]
    )


def test_a_missing_chunk_is_an_error_naming_store_level_and_chunk(store):
    path, _ = store
    (path / "1" / "0" / "1" / "0").unlink()
    tomogram = open_tomogram(path, level=1)
    with pytest.raises(ValueError, match=r"t.zarr level 1: chunk 0/1/0 \(index \(0, 1, 0\)\) is missing \(1 of the 4"):
        tomogram.read()
    assert tomogram.read((slice(0, 4), slice(0, 4), slice(0, 4))).shape == (4, 4, 4)  # other chunks still read


@pytest.mark.parametrize(
    "damage", [lambda b: b[: len(b) // 2], lambda b: bytes(np.random.default_rng(1).bytes(len(b)))]
)
def test_a_chunk_that_does_not_decompress_is_an_error_naming_it(store, damage):
    path, _ = store
    chunk = path / "0" / "1" / "2" / "0"
    chunk.write_bytes(damage(chunk.read_bytes()))
    with pytest.raises(ValueError, match=r"t.zarr level 0: chunk 1/2/0 \(index \(1, 2, 0\)\) cannot be decoded"):
        open_tomogram(path).read()


def test_predict_and_train_refuse_a_tomogram_with_missing_chunks(tmp_path, capsys):
    root = tmp_path / "data"
    make_kaggle_layout(root, runs=("TS_a", "TS_b"), tomo_types=("denoised",))
    level0 = tomogram_path(root, "train", "TS_a", "denoised") / "0"
    victim = sorted(p for p in level0.rglob("*") if p.is_file() and not p.name.startswith("."))[0]
    victim.unlink()
    code = main(
        ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--set", "data.val_runs=TS_b"]
        + ["--set", "train.epochs=1", "--set", "tracking.enabled=false", "--set", "patch.size_zyx=[16,32,32]"]
        + ["--set", "model.channels=[4,8]", "--set", "model.strides=[2]", "--set", "patch.patches_per_epoch=2"]
    )
    error = capsys.readouterr().err
    assert code == 2 and "denoised.zarr level 0: chunk" in error and "is missing" in error
    assert not (tmp_path / "run" / "best.pt").exists()
