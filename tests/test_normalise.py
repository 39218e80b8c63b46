"""Robust per-tomogram normalisation and reading normalised regions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_kaggle_layout

from cryokit.data.normalise import intensity_stats, normalise, normalise_tomogram, read_region, tomogram_intensity_stats
from cryokit.io import open_run_tomogram


@pytest.fixture
def tomogram(tmp_path):
    make_kaggle_layout(tmp_path, runs=("TS_p",), shape_zyx=(24, 40, 36), tomo_types=("denoised",))
    return open_run_tomogram(tmp_path, "train", "TS_p")


def test_robust_stats_of_gaussian_data_ignore_outliers():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=200_000)
    values[:100] = 1e6  # hot pixels
    stats = intensity_stats(values)
    assert stats.median == pytest.approx(3.0, abs=0.05) and stats.scale == pytest.approx(2.0, rel=0.03)
    assert stats.high < 10
    assert normalise(np.array([1e6]), stats)[0] == pytest.approx((stats.high - 3) / stats.scale, rel=1e-3)


def test_tomogram_stats_cached_and_normalise_whole_volume(tomogram):
    stats = tomogram_intensity_stats(tomogram)
    assert tomogram_intensity_stats(tomogram) is stats
    volume = normalise_tomogram(tomogram)
    assert volume.shape == tomogram.shape_zyx and volume.dtype == np.float32
    assert abs(np.median(volume)) < 0.1
    assert np.subtract(*np.percentile(volume, [75, 25])) / 1.349 == pytest.approx(1, abs=0.1)


def test_read_region_normalises_and_pads_outside_with_zero(tomogram):
    stats = tomogram_intensity_stats(tomogram)
    region = read_region(tomogram, (-3, 30, 5), (8, 16, 10))
    expected = normalise(tomogram.read((slice(0, 5), slice(30, 40), slice(5, 15))), stats)
    assert region.shape == (8, 16, 10)
    assert np.array_equal(region[3:, :10], expected)
    assert not region[:3].any() and not region[:, 10:].any()
    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    assert np.array_equal(read_region(array, (1, 1, 1), (2, 2, 2)), array[1:, 1:, 1:])
