"""Normalisation, patch sampling and whole-tomogram inference with exact voxel alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_kaggle_layout

from cryokit.io import open_run_tomogram
from cryokit.patching import (
    cell_centres_voxel,
    choose_particle,
    clamp_origin,
    class_sampling_weights,
    intensity_stats,
    normalise,
    normalise_tomogram,
    particle_patch_origin,
    picks_in_patch,
    predict_tomogram,
    random_patch_origin,
    read_region,
    tomogram_intensity_stats,
)


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


def test_origins_stay_inside_or_centre_a_small_volume():
    assert clamp_origin([-5, 100, 3], (50, 60, 70), (10, 20, 30)).tolist() == [0, 40, 3]
    assert clamp_origin([4, 0, 0], (6, 60, 70), (10, 20, 30)).tolist() == [-2, 0, 0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        origin = random_patch_origin(rng, (50, 60, 70), (10, 20, 30))
        assert np.all(origin >= 0) and np.all(origin + (10, 20, 30) <= (50, 60, 70))


def test_particle_patches_contain_their_particle_with_jitter():
    rng = np.random.default_rng(1)
    size, shape = np.array([16, 32, 32]), (60, 200, 200)
    centre = np.array([30.3, 100.7, 99.2])
    origins = np.array([particle_patch_origin(rng, shape, size, centre, 0.35) for _ in range(300)])
    local = centre - origins
    assert np.all(local >= 0) and np.all(local <= size - 1)
    assert local[:, 1].std() > 5  # jitter spreads the particle
    edge = particle_patch_origin(rng, shape, size, np.array([1.0, 2.0, 198.0]), 0.35)
    assert np.all(edge >= 0) and np.all(edge + size <= shape)
    with pytest.raises(ValueError, match="jitter_fraction"):
        particle_patch_origin(rng, shape, size, centre, 0.7)


def test_rare_and_weighted_classes_are_oversampled():
    weights = class_sampling_weights({"thyroglobulin": 2.0})
    assert weights.tolist() == [1, 1, 1, 1, 2, 1]
    classes = np.array([0] * 90 + [4] * 5 + [3] * 5)  # common apo-ferritin, rare others
    rng = np.random.default_rng(0)
    chosen = np.array([classes[choose_particle(rng, classes, weights)] for _ in range(4000)])
    shares = [np.mean(chosen == k) for k in (0, 3, 4)]
    assert shares == pytest.approx([0.25, 0.25, 0.5], abs=0.03)
    assert choose_particle(rng, np.zeros(0, np.int64), weights) is None
    with pytest.raises(ValueError, match="class_oversampling"):
        class_sampling_weights({"ribosomes": 2.0})


def test_picks_in_patch_keep_particles_just_over_the_border():
    centres = np.array([[10.0, 10, 10], [3.0, 10, 10], [1.0, 10, 10], [10.0, 10, 27.0]])
    local, classes = picks_in_patch(centres, [0, 1, 2, 3], (5, 0, 0), (8, 20, 20), margins_voxels=[1, 2.6, 2, 7.6])
    assert classes.tolist() == [0, 1, 3]  # 2.0 outside with margin 2.6 is kept
    assert np.allclose(local[0], [5, 10, 10])


def _volume(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(37, 70, 53), (10, 20, 12)])
def test_identity_model_returns_the_volume(shape):
    volume = _volume(shape)
    maps = predict_tomogram(lambda x: x, volume, (16, 32, 32), overlap=0.5, batch_size=3)
    assert maps.shape == (1, *shape)
    assert torch.allclose(maps[0], volume, atol=1e-5)


@pytest.mark.parametrize("stride", [2, 4])
def test_strided_model_is_stitched_on_whole_cells(stride):
    shape = (38, 66, 53)  # not multiples of the stride
    volume = _volume(shape, 1)
    maps = predict_tomogram(lambda x: F.avg_pool3d(x, stride), volume, (16, 32, 32), overlap=0.3, output_stride=stride)
    cells = tuple(-(-n // stride) for n in shape)
    pad = [p for n, c in zip(shape[::-1], cells[::-1]) for p in (0, c * stride - n)]
    padded = F.pad(volume[None, None], pad, mode="replicate")
    assert maps.shape == (1, *cells)
    assert torch.allclose(maps, F.avg_pool3d(padded, stride)[0], atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_a_dot_maps_back_to_its_voxel(stride):
    shape, dot = (40, 72, 60), (23, 49, 7)
    volume = torch.zeros(shape)
    volume[dot] = 1.0
    heatmap = lambda x: F.max_pool3d(torch.cat([x, -x], 1), stride)  # two channels, stride s
    maps = predict_tomogram(heatmap, volume, (16, 32, 32), overlap=0.25, batch_size=2, output_stride=stride)
    assert maps.shape[0] == 2
    cell = np.unravel_index(int(maps[0].argmax()), maps.shape[1:])
    assert all(c * stride <= d < (c + 1) * stride for c, d in zip(cell, dot))
    assert np.abs(cell_centres_voxel(cell, stride) - dot).max() <= (stride - 1) / 2
    assert maps[0].max() == pytest.approx(1.0)


def test_dict_outputs_and_tomogram_input(tomogram):
    model = lambda x: {"mean": F.avg_pool3d(x, 2), "max": F.max_pool3d(x, 2)}
    maps = predict_tomogram(model, tomogram, (16, 16, 16), output_stride=2, overlap=0.5)
    assert maps["mean"].shape == maps["max"].shape == (1, 12, 20, 18)
    assert torch.all(maps["max"] >= maps["mean"])
    with pytest.raises(ValueError, match="output_stride=2"):
        predict_tomogram(lambda x: x, tomogram, (16, 16, 16), output_stride=2)  # the model ignores the stride
    full = predict_tomogram(lambda x: x, tomogram, (16, 16, 16))
    assert torch.allclose(full[0], torch.from_numpy(normalise_tomogram(tomogram)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"output_stride": 3}, "output_stride"),
        ({"patch_size_zyx": (16, 30, 32), "output_stride": 4}, "patch_size_zyx"),
        ({"overlap": 1.0}, "overlap"),
    ],
)
def test_bad_inference_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        predict_tomogram(lambda x: x, torch.zeros(20, 20, 20), **{"patch_size_zyx": (16, 16, 16), **kwargs})
