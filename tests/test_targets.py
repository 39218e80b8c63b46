"""Targets: balls with the nearer-centre tie rule, Gaussian heatmaps, detection encode/decode round trip."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cryokit.coords import voxel_zyx_to_angstrom_xyz
from cryokit.particles import PARTICLES
from cryokit.targets import (
    ANCHOR_GROUPS,
    anchor_radii_angstrom,
    anchor_radii_voxels,
    ball_label_map,
    class_anchor_indices,
    class_radii_voxels,
    decode_detections,
    detection_grid_shape,
    detections_to_angstrom_xyz,
    encode_detection_targets,
    gaussian_heatmaps,
    split_detection_maps,
)

SPACING = 10.012444196428572


def _grid(shape):
    return np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)


def _brute_balls(shape, centres, classes, radii):
    d2 = ((_grid(shape)[..., None, :] - centres) ** 2).sum(-1)  # (Z, Y, X, N)
    d2 = np.where(d2 <= radii**2, d2, np.inf)
    nearest = d2.argmin(-1)
    return np.where(np.isfinite(d2.min(-1)), classes[nearest] + 1, 0)


def test_ball_contains_exactly_the_voxels_within_radius():
    labels = ball_label_map((20, 21, 22), [[10.3, 9.6, 11.0]], [4], 3.5)
    d2 = ((_grid((20, 21, 22)) - [10.3, 9.6, 11.0]) ** 2).sum(-1)
    assert np.array_equal(labels == 5, d2 <= 3.5**2)
    assert set(np.unique(labels)) == {0, 5}  # class 4 (thyroglobulin) has label 5
    assert PARTICLES[4].label == 5


def test_ball_partly_outside_the_patch_is_rendered():
    labels = ball_label_map((10, 10, 10), [[-2.0, 5.0, 5.0]], [0], 4.0)
    assert labels[0, 5, 5] == 1 and labels[2, 5, 5] == 1 and labels[3, 5, 5] == 0  # |2 - (-2)| = r is inside


def test_overlapping_balls_nearer_centre_wins_like_brute_force():
    rng = np.random.default_rng(3)
    shape = (16, 18, 20)
    centres = rng.uniform(0, shape, size=(25, 3))
    classes = rng.integers(0, 6, 25)
    radii = rng.uniform(1.5, 5, 25)
    assert np.array_equal(ball_label_map(shape, centres, classes, radii), _brute_balls(shape, centres, classes, radii))
    # Two touching balls: the voxel nearer to the first centre takes its label.
    pair = ball_label_map((1, 1, 12), [[0, 0, 3.0], [0, 0, 7.0]], [0, 5], [4.0, 4.0])
    assert pair[0, 0, 4] == 1 and pair[0, 0, 6] == 6


def test_balls_fast_for_a_hundred_particles():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, (64, 128, 128), size=(100, 3))
    classes = rng.integers(0, 6, 100)
    radii = class_radii_voxels(SPACING, 0.5)[classes]
    start = time.perf_counter()
    ball_label_map((64, 128, 128), centres, classes, radii)
    gaussian_heatmaps((64, 128, 128), centres, classes, radii)
    assert time.perf_counter() - start < 1.0


def test_gaussian_peak_one_at_centre_and_max_over_particles():
    maps = gaussian_heatmaps((12, 12, 12), [[5, 6, 7], [5, 6, 9]], [2, 2], 1.5)
    assert maps.shape == (6, 12, 12, 12) and maps.dtype == np.float32
    assert maps[2, 5, 6, 7] == pytest.approx(1.0) and maps[2, 5, 6, 9] == pytest.approx(1.0)
    assert maps[2, 5, 6, 8] == pytest.approx(np.exp(-1 / (2 * 1.5**2)))  # max, not sum
    assert maps[[0, 1, 3, 4, 5]].max() == 0
    sub = gaussian_heatmaps((12, 12, 12), [[5.3, 6.0, 6.6]], [0], 2.0)[0]
    assert np.unravel_index(sub.argmax(), sub.shape) == (5, 6, 7)
    assert sub.max() == pytest.approx(np.exp(-(0.3**2 + 0.4**2) / 8), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"class_indices": [6]}, "class_indices"),
        ({"radii_voxels": -1.0}, "radii_voxels"),
        ({"class_indices": [0, 1]}, "class_indices"),
        ({"shape_zyx": (4, 4)}, "shape_zyx"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    args = {"shape_zyx": (4, 4, 4), "centres_voxel_zyx": [[1, 1, 1]], "class_indices": [0], "radii_voxels": 1.0}
    with pytest.raises(ValueError, match=name):
        ball_label_map(**{**args, **kwargs})


def test_anchors_cover_every_class_with_small_log_ratios():
    assert sorted(n for g in ANCHOR_GROUPS for n in g) == sorted(p.name for p in PARTICLES)
    ratios = np.log([p.radius_angstrom for p in PARTICLES]) - np.log(anchor_radii_angstrom()[class_anchor_indices()])
    assert np.abs(ratios).max() < 0.1
    assert np.allclose(anchor_radii_voxels(SPACING), anchor_radii_angstrom() / SPACING)


@given(st.floats(-0.5, 62.49), st.sampled_from([1, 2, 4]))
@settings(max_examples=200, deadline=None)
def test_cell_of_a_point_and_offset_range(z, stride):
    targets = encode_detection_targets((63, 8, 8), [[z, 0.0, 0.0]], [0], 4.0, [4.0], stride)
    cell = int(np.argwhere(targets.objectness[0])[0][0])
    voxel = int(np.floor(z + 0.5))  # the voxel holding z (nearest centre)
    assert cell * stride <= voxel < (cell + 1) * stride
    offset = targets.offset_zyx[0, 0, cell, 0, 0]
    assert -0.5 <= offset < 0.5
    assert cell * stride + (stride - 1) / 2 + offset * stride == pytest.approx(z, abs=1e-5)


def _one_hot_maps(targets):
    one_hot = np.eye(6, dtype=np.float32)[np.clip(targets.class_index, 0, None)]  # (A, G.., C)
    return np.moveaxis(one_hot, -1, 1) * targets.objectness[:, None]


@pytest.mark.parametrize("seed", range(6))
def test_encode_decode_round_trip_on_crowded_layouts(seed):
    rng = np.random.default_rng(seed)
    shape, stride = (32, 48, 40), 4
    n = 300  # crowded: ~1 particle per 4 cells
    centres = rng.uniform(-2, np.asarray(shape) + 1, size=(n, 3))
    classes = rng.integers(0, 6, n)
    radii = class_radii_voxels(SPACING)[classes] * rng.uniform(0.9, 1.1, n)
    anchors = anchor_radii_voxels(SPACING)
    targets = encode_detection_targets(shape, centres, classes, radii, anchors, stride)
    assert targets.objectness.shape == (3, *detection_grid_shape(shape, stride)) == (3, 8, 12, 10)
    decoded = decode_detections(
        targets.objectness, _one_hot_maps(targets), targets.offset_zyx, targets.log_radius_ratio, stride, anchors
    )
    inside = np.all((centres >= -0.5) & (centres < np.asarray(shape) - 0.5), axis=1)
    assert len(decoded.scores) + targets.n_collisions == inside.sum()
    assert targets.n_collisions > 0  # this layout does collide
    distance = np.linalg.norm(decoded.centres_voxel_zyx[:, None] - centres[None], axis=-1)
    match = distance.argmin(1)
    assert distance.min(1).max() < 0.1
    assert np.array_equal(decoded.class_indices, classes[match])
    assert np.allclose(decoded.radii_voxels, radii[match], rtol=1e-5)
    assert len(set(match)) == len(match)


def test_collision_keeps_the_particle_nearer_the_cell_centre():
    targets = encode_detection_targets(
        (8, 8, 8), [[1.0, 1.0, 1.0], [2.2, 2.0, 1.5], [3.3, 0.0, 0.0]], [0, 1, 0], 3.0, [3.0], 4
    )
    assert targets.n_collisions == 2 and targets.objectness.sum() == 1
    assert targets.class_index[0, 0, 0, 0] == 1  # (2.2, 2, 1.5) is nearest (1.5, 1.5, 1.5)


def test_empty_patch_and_logit_decoding():
    anchors = anchor_radii_voxels(SPACING)
    empty = encode_detection_targets((16, 16, 16), np.zeros((0, 3)), [], 1.0, anchors, 4)
    assert empty.objectness.sum() == 0 and empty.n_collisions == 0 and (empty.class_index == -1).all()
    targets = encode_detection_targets((16, 16, 16), [[5.2, 9.9, 1.1]], [3], 15.0, anchors, 4)
    logits = (targets.objectness * 20 - 10, torch.as_tensor(_one_hot_maps(targets) * 20))
    decoded = decode_detections(*logits, targets.offset_zyx, targets.log_radius_ratio, 4, anchors, from_logits=True)
    assert np.allclose(decoded.centres_voxel_zyx, [[5.2, 9.9, 1.1]], atol=1e-5)
    assert decoded.class_indices.tolist() == [3] and decoded.scores[0] > 0.99
    assert np.allclose(
        detections_to_angstrom_xyz(decoded.centres_voxel_zyx, SPACING, (10, 0, 0)),
        voxel_zyx_to_angstrom_xyz([[15.2, 9.9, 1.1]], SPACING),
        atol=1e-3,
    )


def test_split_detection_maps_channel_layout():
    maps = torch.arange(2 * 3 * 11 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 33, 2, 2, 2)
    parts = split_detection_maps(maps, n_anchors=3)
    assert parts["class_scores"].shape == (2, 3, 6, 2, 2, 2) and parts["offset_zyx"].shape == (2, 3, 3, 2, 2, 2)
    assert torch.equal(parts["objectness"][:, 1], maps[:, 11])
    assert torch.equal(parts["log_radius_ratio"][:, 2], maps[:, 32])
    with pytest.raises(ValueError, match="maps"):
        split_detection_maps(maps[:, :30], n_anchors=3)
