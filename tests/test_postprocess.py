"""Peak finding on score maps: sub-voxel accuracy, NMS, thresholds, empty maps, Angstrom output."""

from __future__ import annotations

import numpy as np
import pytest

from cryokit.coords import voxel_zyx_to_angstrom_xyz
from cryokit.postprocess import (
    PICK_SCORE_COLUMNS,
    find_peaks_components,
    find_peaks_maxpool,
    maps_to_picks,
    refine_centres,
)

SPACING_ZYX = (10.012444196428572, 10.012444196428572, 10.012444537618887)


def gaussian_map(shape_zyx, centres_zyx, sigma=2.0, heights=None) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij"), axis=-1)
    out = np.zeros(shape_zyx, dtype=np.float32)
    for i, centre in enumerate(np.atleast_2d(centres_zyx)):
        height = 1.0 if heights is None else heights[i]
        out += height * np.exp(-np.sum((grid - centre) ** 2, axis=-1) / (2 * sigma**2)).astype(np.float32)
    return out


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5])
def test_gaussian_at_fractional_position_found_within_half_a_voxel(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    for _ in range(5):
        centre = np.array([14.0, 17.0, 15.0]) + rng.uniform(-0.5, 0.5, 3)
        score = gaussian_map((28, 32, 30), centre, sigma)
        found, scores = find_peaks_maxpool(score, radius_voxels=3, threshold=0.5)
        assert len(found) == 1 and scores[0] == pytest.approx(score.max())
        assert np.linalg.norm(found[0] - centre) < 0.5
        unrefined, _ = find_peaks_maxpool(score, radius_voxels=3, threshold=0.5, refine=False)
        assert np.all(unrefined[0] == np.round(unrefined[0]))
        components, _ = find_peaks_components(score, threshold=0.3)
        assert np.linalg.norm(components[0] - centre) < 0.5


def test_peaks_closer_than_the_kernel_collapse_and_far_ones_do_not():
    near = gaussian_map((24, 40, 40), [[12, 20, 18], [12, 20, 22]], sigma=1.0, heights=[1.0, 0.9])
    found, scores = find_peaks_maxpool(near, radius_voxels=5, threshold=0.1)
    assert len(found) == 1 and np.allclose(found[0], [12, 20, 18], atol=0.5)
    far = gaussian_map((24, 40, 40), [[12, 20, 8], [12, 20, 30]], sigma=1.0, heights=[0.7, 1.0])
    found, scores = find_peaks_maxpool(far, radius_voxels=5, threshold=0.1)
    assert len(found) == 2 and scores[0] > scores[1]  # sorted by decreasing score


def test_a_plateau_gives_one_peak():
    score = np.zeros((10, 10, 10), dtype=np.float32)
    score[4:6, 4:6, 4:6] = 1.0
    found, _ = find_peaks_maxpool(score, radius_voxels=2, threshold=0.5)
    assert len(found) == 1
    components, _ = find_peaks_components(score, threshold=0.5)
    np.testing.assert_allclose(components, [[4.5, 4.5, 4.5]])


def test_threshold_keeps_only_peaks_at_or_above_it():
    score = gaussian_map((20, 40, 40), [[10, 10, 10], [10, 30, 30]], sigma=1.5, heights=[0.4, 0.8])
    assert len(find_peaks_maxpool(score, 3, threshold=0.5)[0]) == 1
    assert len(find_peaks_maxpool(score, 3, threshold=0.3)[0]) == 2
    assert len(find_peaks_maxpool(score, 3, threshold=0.8)[0]) == 1  # inclusive
    assert len(find_peaks_components(score, threshold=0.5)[0]) == 1
    assert len(find_peaks_components(score, threshold=0.3, min_voxels=10_000)[0]) == 0


def test_empty_maps_give_empty_outputs_with_the_columns():
    zeros = np.zeros((2, 8, 12, 12), dtype=np.float32)
    for method in ("maxpool", "components"):
        picks = maps_to_picks(zeros, ["ribosome", "background"], SPACING_ZYX, "TS_x", 0.5, method=method)
        assert list(picks.columns) == PICK_SCORE_COLUMNS and len(picks) == 0
    centres, scores = find_peaks_maxpool(zeros[0], 2, 0.5)
    assert centres.shape == (0, 3) and scores.shape == (0,)
    assert refine_centres(zeros[0], np.empty((0, 3))).shape == (0, 3)


def test_maps_to_picks_converts_to_angstrom_xyz_and_keeps_scores():
    centre_zyx = np.array([6.3, 11.6, 20.2])
    channel = gaussian_map((16, 24, 32), centre_zyx, sigma=1.5)
    maps = np.stack([np.zeros_like(channel), channel, 0.5 * channel])
    picks = maps_to_picks(
        maps, ["background", "apo-ferritin", "ribosome"], SPACING_ZYX, "TS_x", {"apo-ferritin": 0.5, "ribosome": 0.2}
    )
    assert list(picks.columns) == PICK_SCORE_COLUMNS
    assert list(picks["particle_type"]) == ["apo-ferritin", "ribosome"]
    assert set(picks["experiment"]) == {"TS_x"}
    expected_xyz = voxel_zyx_to_angstrom_xyz(centre_zyx, SPACING_ZYX)[0]
    for row in picks.itertuples():
        assert np.linalg.norm([row.x - expected_xyz[0], row.y - expected_xyz[1], row.z - expected_xyz[2]]) < 5.0
    np.testing.assert_allclose(picks["score"], [channel.max(), 0.5 * channel.max()], rtol=1e-6)
    skipped = maps_to_picks(
        maps, ["background", "apo-ferritin", "ribosome"], SPACING_ZYX, "TS_x", {"apo-ferritin": None, "ribosome": 0.2}
    )
    assert list(skipped["particle_type"]) == ["ribosome"]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="score_zyx"):
        find_peaks_maxpool(np.zeros((4, 4)), 1, 0.5)
    with pytest.raises(ValueError, match="radius_voxels"):
        find_peaks_maxpool(np.zeros((4, 4, 4)), 0, 0.5)
    with pytest.raises(ValueError, match="thresholds has no entry"):
        maps_to_picks(np.zeros((1, 4, 4, 4)), ["ribosome"], SPACING_ZYX, "TS_x", {"apo-ferritin": 0.5})
    with pytest.raises(ValueError, match="prob_czyx"):
        maps_to_picks(np.zeros((2, 4, 4, 4)), ["ribosome"], SPACING_ZYX, "TS_x", 0.5)
    with pytest.raises(ValueError, match="method"):
        maps_to_picks(np.zeros((1, 4, 4, 4)), ["ribosome"], SPACING_ZYX, "TS_x", 0.5, method="watershed")


@pytest.mark.parametrize("seed", range(4))
def test_sparse_local_maxima_equal_the_dense_filter(monkeypatch, seed):
    import scipy.ndimage

    import cryokit.postprocess as postprocess

    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(40, 150, size=3))
    score = rng.random(shape).astype(np.float32) * 0.04  # below the threshold everywhere ...
    for centre in rng.integers(0, shape, size=(12, 3)):  # ... but near a few blobs, some on tile edges
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        score += np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / 18.0)
    score[tuple(rng.integers(0, shape))] = score.max()  # a tie with the highest peak
    score = np.round(score, 2)  # plateaus: equal neighbours are all maxima, as in max_pool3d
    half, threshold = int(rng.integers(1, 9)), 0.05
    pooled = scipy.ndimage.maximum_filter(score, size=2 * half + 1, mode="constant", cval=-np.inf)
    dense = np.argwhere((score == pooled) & (score >= threshold))
    monkeypatch.setattr(postprocess, "_DENSE_TILE_SHARE", 1.0)  # always by tiles
    monkeypatch.setattr(postprocess, "_PEAK_TILE", int(rng.choice([8, 16, 32])))  # many tiles, many edges
    tiled = postprocess._local_maxima(score, half, threshold)
    assert len(tiled) > 0 and np.array_equal(tiled, dense)  # the same voxels, in the same (C) order
    monkeypatch.setattr(postprocess, "_DENSE_TILE_SHARE", 0.0)  # always in one piece
    assert np.array_equal(postprocess._local_maxima(score, half, threshold), dense)
    assert len(postprocess._local_maxima(score, half, 2.0)) == 0  # nothing reaches it
