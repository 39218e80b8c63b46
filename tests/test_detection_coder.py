"""The detector's coding: anchors, targets on the grid, decoding back to centres, the channel layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cryokit.data.targets import class_radii_voxels
from cryokit.models.anchors import (
    ANCHOR_GROUPS,
    anchor_groups,
    anchor_radii_angstrom,
    anchor_radii_voxels,
    class_anchor_indices,
)
from cryokit.models.detection_coder import (
    DetectionLayout,
    DetectionTargetEncoder,
    decode_detections,
    detection_grid_shape,
    detector_offset_bound,
    encode_detection_targets,
)
from cryokit.particles import PARTICLES

SPACING = 10.012444196428572


def test_anchors_cover_every_class_with_small_log_ratios():
    assert sorted(n for g in ANCHOR_GROUPS for n in g) == sorted(p.name for p in PARTICLES)
    ratios = np.log([p.radius_angstrom for p in PARTICLES]) - np.log(anchor_radii_angstrom()[class_anchor_indices()])
    assert np.abs(ratios).max() < 0.1
    assert np.allclose(anchor_radii_voxels(SPACING), anchor_radii_angstrom() / SPACING)


def test_one_anchor_takes_every_class_at_the_geometric_mean_radius():
    assert anchor_groups("one") == (tuple(p.name for p in PARTICLES),)
    assert class_anchor_indices("one").tolist() == [0] * len(PARTICLES)
    radii = np.array([p.radius_angstrom for p in PARTICLES])
    assert anchor_radii_angstrom("one") == pytest.approx([np.exp(np.log(radii).mean())])
    assert np.abs(np.log(radii / anchor_radii_angstrom("one")[0])).max() < 0.5
    with pytest.raises(ValueError, match="anchor grouping must be one of"):
        anchor_groups("by_size")


def test_one_anchor_targets_put_different_classes_on_one_anchor_and_decode_to_them():
    """Under one anchor a beta-galactosidase and a thyroglobulin are both positives of anchor 0, told apart
    by their class index (the class softmax), and decode back to their classes, centres and radii."""
    encoder = DetectionTargetEncoder(stride=4, positive_radius_cells=1.0, anchors="one")
    centres = np.array([[6.2, 10.0, 9.0], [22.0, 30.5, 28.1]])
    classes = np.array([2, 4])  # beta-galactosidase, thyroglobulin
    target = {k: v.numpy() for k, v in encoder((32, 40, 40), centres, classes, SPACING).items()}
    assert target["objectness"].shape == (1, 8, 10, 10)
    assert sorted(np.unique(target["class_index"][target["objectness"] > 0]).tolist()) == [2, 4]
    one_hot = np.moveaxis(np.eye(6, dtype=np.float32)[np.clip(target["class_index"], 0, None)], -1, 1)
    anchors = anchor_radii_voxels(SPACING, "one")
    decoded = decode_detections(
        target["objectness"],
        one_hot * target["objectness"][:, None],
        target["offset_zyx"],
        target["log_radius_ratio"],
        4,
        anchors,
    )
    nearest = np.linalg.norm(decoded.centres_voxel_zyx[:, None] - centres[None], axis=-1).argmin(1)
    assert np.array_equal(decoded.class_indices, classes[nearest])
    np.testing.assert_allclose(decoded.radii_voxels, class_radii_voxels(SPACING)[decoded.class_indices], rtol=1e-5)


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


def test_detection_layout_splits_what_it_packs():
    layout = DetectionLayout(n_anchors=3, n_classes=6)
    assert layout.n_channels == 33 and layout.vector_channels == ((7, 8, 9), (18, 19, 20), (29, 30, 31))
    maps = torch.arange(2 * 3 * 11 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 33, 2, 2, 2)
    parts = layout.split(maps)
    assert parts["class_scores"].shape == (2, 3, 6, 2, 2, 2) and parts["offset_zyx"].shape == (2, 3, 3, 2, 2, 2)
    assert torch.equal(parts["objectness"][:, 1], maps[:, 11])
    assert torch.equal(parts["log_radius_ratio"][:, 2], maps[:, 32])
    with pytest.raises(ValueError, match="maps"):
        layout.split(maps[:, :30])
    torch.manual_seed(0)
    outputs = {
        "objectness": torch.randn(1, 3, 2, 2, 2),
        "class_scores": torch.randn(1, 3, 6, 2, 2, 2),
        "offset_zyx": torch.randn(1, 3, 3, 2, 2, 2),
        "log_radius_ratio": torch.randn(1, 3, 2, 2, 2),
    }
    packed = layout.split(layout.pack(outputs))
    assert torch.allclose(packed["objectness"], outputs["objectness"].sigmoid())
    assert torch.allclose(packed["class_scores"], outputs["class_scores"].softmax(dim=2))
    assert torch.equal(packed["offset_zyx"], outputs["offset_zyx"])
    assert torch.equal(packed["log_radius_ratio"], outputs["log_radius_ratio"])


def test_detection_target_encoder_uses_the_catalog_radii_and_anchors():
    encoder = DetectionTargetEncoder(stride=4)
    target = encoder((16, 16, 16), np.array([[5.2, 9.9, 1.1]]), np.array([3]), SPACING)
    assert set(target) == {"objectness", "class_index", "offset_zyx", "log_radius_ratio"}
    anchor = class_anchor_indices()[3]
    assert float(target["objectness"][anchor].sum()) == 1.0
    expected = np.log(class_radii_voxels(SPACING)[3] / anchor_radii_voxels(SPACING)[anchor])
    assert float(target["log_radius_ratio"][anchor].sum()) == pytest.approx(expected, rel=1e-5)


def test_centre_sampling_marks_the_cells_near_each_centre_and_decodes_back_to_it():
    anchors = anchor_radii_voxels(SPACING)
    centres = np.array([[9.0, 9.5, 30.2], [22.3, 30.0, 8.7]])
    classes = np.array([0, 3])
    radii = class_radii_voxels(SPACING)[classes]
    own_only = encode_detection_targets((32, 48, 40), centres, classes, radii, anchors, 4)
    sampled = encode_detection_targets((32, 48, 40), centres, classes, radii, anchors, 4, positive_radius_cells=1.0)
    assert own_only.objectness.sum() == 2 and sampled.n_collisions == 0
    # Every positive cell's centre lies within 1 cell of its particle and its offset points at that particle.
    decoded = decode_detections(
        sampled.objectness, _one_hot_maps(sampled), sampled.offset_zyx, sampled.log_radius_ratio, 4, anchors
    )
    assert 2 * 2 < len(decoded.scores) <= 2 * 7  # each centre claims its own cell and up to its 6 face neighbours
    distance = np.linalg.norm(decoded.centres_voxel_zyx[:, None] - centres[None], axis=-1)
    assert distance.min(1).max() < 1e-4
    assert np.array_equal(decoded.class_indices, classes[distance.argmin(1)])
    assert np.abs(sampled.offset_zyx).max() <= 1.0 < detector_offset_bound(1.0)
    assert detector_offset_bound(0.0) == 1.0  # the bound of detectors trained on own cells only


def test_centre_sampling_gives_a_shared_cell_to_the_nearer_particle():
    # Two particles 1.2 cells apart: the cells both reach go to the nearer one, neither is left without a cell.
    centres = np.array([[8.0, 8.0, 8.0], [8.0, 8.0, 12.8]])
    targets = encode_detection_targets((16, 16, 24), centres, [0, 1], 3.0, [3.0], 4, positive_radius_cells=1.0)
    assert targets.n_collisions == 0
    cell_centres_x = np.arange(6) * 4 + 1.5
    owner = targets.class_index[0, 2, 2]  # the row of cells along x through both centres
    for x, c in zip(cell_centres_x, owner):
        if c >= 0:
            assert c == np.argmin(np.abs(np.array([8.0, 12.8]) - x))
    with pytest.raises(ValueError, match="positive_radius_cells"):
        encode_detection_targets((16, 16, 16), centres, [0, 1], 3.0, [3.0], 4, positive_radius_cells=-1.0)
