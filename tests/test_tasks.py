"""The tasks' decoders and the pick-level ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cryokit.config import MODEL_PRESETS, RunConfig, apply_overrides
from cryokit.losses import CompositeDetectionLoss
from cryokit.models.anchors import anchor_radii_voxels, class_anchor_indices
from cryokit.models.build import build_model, build_task
from cryokit.models.detection_coder import encode_detection_targets
from cryokit.particles import PARTICLE_NAMES
from cryokit.postprocess import apply_thresholds, merge_picks, smooth_maps
from cryokit.tasks import DetectionTask, PeakDecoding, SegmentationTask

SPACING = (10.0, 10.0, 10.0)


def _picks(rows):
    return pd.DataFrame(rows, columns=["experiment", "particle_type", "x", "y", "z", "score"])


@pytest.mark.parametrize("positive_radius_cells", [0.0, 1.0])
def test_detection_decode_round_trips_encoded_particles_to_angstrom(positive_radius_cells):
    """Dense maps built from encoded targets decode back to the particles, in Angstrom x, y, z; with centre
    sampling, the NMS merges the several cells that vote for each particle into one pick."""
    anchors = anchor_radii_voxels(SPACING)
    centres_zyx = np.array([[10.3, 20.6, 30.2], [22.0, 40.4, 12.9], [30.5, 9.2, 44.7]])
    classes = np.array([0, 3, 4])
    radii = np.array([6.0, 15.0, 13.0])
    encoded = encode_detection_targets(
        (40, 56, 56), centres_zyx, classes, radii, anchors, stride=4, positive_radius_cells=positive_radius_cells
    )
    assert (encoded.objectness.sum() > 3) == (positive_radius_cells > 0)
    task = DetectionTask(CompositeDetectionLoss(), anchors, stride=4, decoding=PeakDecoding(candidate_floor=0.5))
    logits = {
        "objectness": torch.from_numpy(encoded.objectness * 20 - 10)[None],
        "class_scores": torch.nn.functional.one_hot(torch.from_numpy(encoded.class_index).clamp(min=0), 6)
        .permute(0, 4, 1, 2, 3)
        .float()[None]
        * 20,
        "offset_zyx": torch.from_numpy(encoded.offset_zyx)[None],
        "log_radius_ratio": torch.from_numpy(encoded.log_radius_ratio)[None],
    }
    maps = task.dense_maps(logits)[0].numpy()
    picks = task.decode(maps, SPACING, "TS_x")
    assert len(picks) == 3 and set(picks["experiment"]) == {"TS_x"}
    for (z, y, x), k in zip(centres_zyx, classes):
        row = picks[picks["particle_type"] == PARTICLE_NAMES[k]]
        np.testing.assert_allclose(row[["x", "y", "z"]].to_numpy()[0], [x * 10, y * 10, z * 10], atol=1e-3)


def test_detection_decode_suppresses_duplicates_within_the_class_radius():
    decoding = PeakDecoding(candidate_floor=0.1, radius_fraction=0.5)
    task = DetectionTask(CompositeDetectionLoss(), anchor_radii_voxels(SPACING), stride=4, decoding=decoding)
    maps = np.zeros((3 * 11, 6, 6, 6), np.float32)
    anchor = class_anchor_indices()[3]  # ribosome
    base = anchor * 11
    for cell, score in (((2, 2, 2), 0.9), ((2, 2, 3), 0.8), ((5, 5, 5), 0.7)):
        maps[(base, *cell)] = score
        maps[(base + 1 + 3, *cell)] = 1.0  # class probability of the ribosome
    picks = task.decode(maps, SPACING, "r")
    # cells 4 voxels apart (40 A) fall within 0.5 x 150 A: one survives; the far one stays.
    assert sorted(picks["score"]) == pytest.approx([0.7, 0.9])


def test_segmentation_dense_maps_drop_background():
    task = SegmentationTask("balls", loss=None)
    logits = torch.zeros(1, 7, 2, 2, 2)
    logits[:, 4] = 5.0
    maps = task.dense_maps(logits)
    assert maps.shape == (1, 6, 2, 2, 2)
    assert torch.allclose(maps[:, 3], torch.full((1, 2, 2, 2), np.exp(5) / (np.exp(5) + 6)))


def test_merge_picks_clusters_per_class_and_rewards_agreement():
    a = _picks([("r", "ribosome", 100.0, 100.0, 100.0, 0.8), ("r", "apo-ferritin", 500.0, 500.0, 500.0, 0.6)])
    b = _picks([("r", "ribosome", 120.0, 100.0, 100.0, 0.4), ("r", "ribosome", 900.0, 900.0, 900.0, 0.5)])
    merged = merge_picks([a, b], radius_fraction=0.5).sort_values("x").reset_index(drop=True)
    assert list(merged["particle_type"]) == ["ribosome", "apo-ferritin", "ribosome"]
    # agreeing pair: mean of 0.8 and 0.4, centre weighted by score
    assert merged.loc[0, "score"] == pytest.approx(0.6)
    assert merged.loc[0, "x"] == pytest.approx((100 * 0.8 + 120 * 0.4) / 1.2)
    # one source only: its score averaged with a missing 0
    assert merged.loc[1, "score"] == pytest.approx(0.3) and merged.loc[2, "score"] == pytest.approx(0.25)
    assert merge_picks([a.iloc[:0], b.iloc[:0]]).empty


def test_apply_thresholds_per_class_with_default():
    picks = _picks(
        [("r", "ribosome", 0, 0, 0, 0.5), ("r", "ribosome", 0, 0, 0, 0.2), ("r", "thyroglobulin", 0, 0, 0, 0.3)]
    )
    kept = apply_thresholds(picks, {"ribosome": 0.4}, default=0.25)
    assert list(kept["score"]) == [0.5, 0.3]


def test_components_decoding_drops_components_smaller_than_the_share_of_the_ball():
    maps = np.zeros((6, 20, 20, 20), np.float32)
    maps[3, 2:9, 2:9, 2:9] = 0.9  # a 7^3 blob of ribosome score
    maps[3, 15, 15, 15] = 0.9  # a single voxel
    keep_all = SegmentationTask("balls", None, decoding=PeakDecoding(method="components", min_voxels_fraction=0.0))
    assert len(keep_all.decode(maps, SPACING, "r")) == 2
    strict = SegmentationTask("balls", None, decoding=PeakDecoding(method="components", min_voxels_fraction=0.1))
    # a ball of 0.5 x 150 A = 7.5 voxels holds ~1767 voxels: 10 % of it is 177, so only the 343-voxel blob stays
    assert strict.decoding.min_voxels("ribosome", SPACING, 1) == 177
    picks = strict.decode(maps, SPACING, "r")
    assert len(picks) == 1 and picks["x"].iloc[0] == pytest.approx(50.0)


def _smooth_random_maps(channels: int, shape_zyx, seed: int) -> np.ndarray:
    """Maps with many local maxima over a wide range of scores, as a trained network's noisy output."""
    import scipy.ndimage

    noise = np.random.default_rng(seed).random((channels, *shape_zyx)).astype(np.float32)
    maps = np.stack([scipy.ndimage.gaussian_filter(c, 1.5) for c in noise])
    return (maps - maps.min()) / (maps.max() - maps.min())


THRESHOLDS = {"apo-ferritin": 0.55, "beta-amylase": None, "beta-galactosidase": 0.7, "ribosome": 0.02}


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_segmentation_floors_give_the_picks_that_pass_the_thresholds(backend):
    task = SegmentationTask("balls", None, decoding=PeakDecoding(candidate_floor=0.05, backend=backend))
    maps = _smooth_random_maps(6, (30, 40, 40), seed=1)
    every = task.decode(maps, SPACING, "r")
    floored = task.decode(maps, SPACING, "r", THRESHOLDS)
    wanted = apply_thresholds(every, {k: (2.0 if v is None else v) for k, v in THRESHOLDS.items()}, 0.05)
    assert 0 < len(floored) < len(every)  # the floors did drop candidates, and left some
    assert set(floored["particle_type"]) >= {"apo-ferritin", "ribosome"}
    assert "beta-amylase" not in set(floored["particle_type"])  # None skips the class
    # a threshold under the candidate floor keeps the floor: ribosome is decoded as before
    pd.testing.assert_frame_equal(floored.reset_index(drop=True), wanted.reset_index(drop=True))


def test_components_decoding_ignores_floors():
    """Components depend on the floor (their centroids move), so ``floors`` must not change them."""
    task = SegmentationTask("balls", None, decoding=PeakDecoding(method="components", candidate_floor=0.3))
    maps = _smooth_random_maps(6, (20, 30, 30), seed=2)
    pd.testing.assert_frame_equal(task.decode(maps, SPACING, "r", THRESHOLDS), task.decode(maps, SPACING, "r"))


def test_detection_floors_give_the_picks_that_pass_the_thresholds():
    task = DetectionTask(CompositeDetectionLoss(), anchor_radii_voxels(SPACING), stride=4)
    rng = np.random.default_rng(3)
    maps = rng.random((3 * 11, 8, 10, 10)).astype(np.float32)
    maps[[a * 11 + 1 + c for a in range(3) for c in range(6)]] **= 3  # class probabilities: one clearly best
    every = task.decode(maps, SPACING, "r")
    floored = task.decode(maps, SPACING, "r", THRESHOLDS)
    wanted = apply_thresholds(every, {k: (2.0 if v is None else v) for k, v in THRESHOLDS.items()}, 0.05)
    assert 0 < len(floored) < len(every)
    pd.testing.assert_frame_equal(floored.reset_index(drop=True), wanted.reset_index(drop=True))


def test_smoothing_ranks_a_particle_blob_above_a_lone_bright_cell():
    """A blob of 0.6 (what a particle leaves) against one cell of 0.9 (noise): smoothing turns the order round."""
    maps = np.zeros((6, 16, 24, 24), np.float32)
    thyroglobulin = PARTICLE_NAMES.index("thyroglobulin")
    maps[thyroglobulin, 2:6, 2:6, 2:6] = 0.6  # centre voxel (3.5, 3.5, 3.5)
    maps[thyroglobulin, 10, 16, 16] = 0.9
    spacing = (20.0, 20.0, 20.0)
    for sigma, first in ((0.0, (16, 16, 10)), (40.0, (3.5, 3.5, 3.5))):
        task = SegmentationTask("balls", None, decoding=PeakDecoding(smooth_sigma_angstrom=sigma))
        picks = task.decode(maps, spacing, "r").sort_values("score", ascending=False)
        best = picks.iloc[0]
        assert best["particle_type"] == "thyroglobulin"
        assert (best["x"], best["y"], best["z"]) == pytest.approx([20.0 * v for v in first], abs=20.0)
    # sigma is in Angstrom: 40 A on 40 A cells blurs as 20 A on 20 A cells, and anisotropic cells blur each
    # axis by its own cell count
    spike = np.zeros((1, 9, 9, 9), np.float32)
    spike[0, 4, 4, 4] = 1.0
    assert torch.allclose(smooth_maps(spike, 40.0, (40.0,) * 3), smooth_maps(spike, 20.0, (20.0,) * 3))
    blurred = smooth_maps(spike, 40.0, (80.0, 40.0, 40.0))[0]
    assert blurred[3, 4, 4] < blurred[4, 3, 4] and float(blurred.sum()) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValueError, match="smooth_sigma_angstrom >= 0"):
        PeakDecoding(smooth_sigma_angstrom=-1.0)


def test_refine_off_keeps_peaks_at_cell_centres_and_the_config_reaches_the_task():
    """A peak between two cells: refined it lies between them, unrefined at the brighter cell's centre."""
    maps = np.zeros((6, 8, 8, 8), np.float32)
    ribosome = PARTICLE_NAMES.index("ribosome")
    maps[ribosome, 4, 4, 4], maps[ribosome, 4, 4, 5] = 0.9, 0.8  # x between cells 4 and 5, nearer 4
    spacing = (10.0, 10.0, 10.0)  # stride 2: 20 A cells, cell j's centre at voxel 2j + 0.5
    unrefined_x, refined_x = (
        SegmentationTask("balls", None, output_stride=2, decoding=PeakDecoding(refine=refine))
        .decode(maps, spacing, "r")
        .query("particle_type == 'ribosome'")["x"]
        .item()
        for refine in (False, True)
    )
    assert unrefined_x == pytest.approx(10.0 * (2 * 4 + 0.5))
    assert 10.0 * (2 * 4 + 0.5) < refined_x < 10.0 * (2 * 4.5 + 0.5)
    config = apply_overrides(RunConfig(), {**MODEL_PRESETS["unet"], "postprocess.refine": False})
    task = build_task(config.model, config.target, config.loss, config.postprocess, SPACING)
    assert task.decoding.refine is False and PeakDecoding().refine is True


def test_the_detector_refuses_map_smoothing():
    config = apply_overrides(RunConfig(), {**MODEL_PRESETS["yolo3d"], "postprocess.smooth_sigma_angstrom": 40.0})
    with pytest.raises(ValueError, match="smooth_sigma_angstrom=40.0 blurs U-Net maps"):
        build_task(config.model, config.target, config.loss, config.postprocess, SPACING)


def test_centre_sampling_is_a_detector_setting_that_widens_the_offset_bound():
    preset = apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"])
    assert preset.target.positive_radius_cells == 1.0
    assert build_model(preset.model, preset.target, SPACING).offset_bound == 1.5  # targets reach 1 cell
    own_cell = apply_overrides(preset, {"target.positive_radius_cells": 0.0})  # checkpoints of before 2026-12-07
    assert build_model(own_cell.model, own_cell.target, SPACING).offset_bound == 1.0
    unet = apply_overrides(RunConfig(), {**MODEL_PRESETS["unet"], "target.positive_radius_cells": 1.0})
    with pytest.raises(ValueError, match="positive_radius_cells=1.0 samples the detector's positive cells"):
        build_task(unet.model, unet.target, unet.loss, unet.postprocess, SPACING)


def test_anchor_grouping_is_a_checked_detector_setting():
    preset = apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"])
    assert preset.target.anchors == "size_groups"
    one = apply_overrides(preset, {"target.anchors": "one"})
    task = build_task(one.model, one.target, one.loss, one.postprocess, SPACING)
    assert task.layout.n_anchors == 1 and task.anchors_voxels.tolist() == anchor_radii_voxels(SPACING, "one").tolist()
    unknown = apply_overrides(preset, {"target.anchors": "by_size"})
    with pytest.raises(ValueError, match="target.anchors must be one of"):
        build_task(unknown.model, unknown.target, unknown.loss, unknown.postprocess, SPACING)
    unet = apply_overrides(RunConfig(), {**MODEL_PRESETS["unet"], "target.anchors": "one"})
    with pytest.raises(ValueError, match="groups the detector's classes"):
        build_task(unet.model, unet.target, unet.loss, unet.postprocess, SPACING)


def test_backbone_width_is_checked_before_anything_is_trained():
    """A width other than MedicalNet's 64 cannot take its pretrained weights: refused when the task is built,
    before any checkpoint is read (the file named here does not exist)."""
    preset = apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"])
    for overrides in (
        {"model.backbone_width": 32, "model.backbone_weights": "/nowhere/resnet_18.pth"},
        {"model.backbone_width": 0},
    ):
        config = apply_overrides(preset, overrides)
        with pytest.raises(ValueError, match="model.backbone_width must be >= 1, and 64"):
            build_task(config.model, config.target, config.loss, config.postprocess, SPACING)
    narrow = apply_overrides(preset, {"model.backbone_width": 32})
    assert build_model(narrow.model, narrow.target, SPACING).backbone.feature_channels["layer1"] == 32


def test_threshold_scale_outside_zero_to_one_is_refused_when_the_task_is_built():
    preset = apply_overrides(RunConfig(), MODEL_PRESETS["unet"])
    for bad in (0.0, 1.2):
        config = apply_overrides(preset, {"postprocess.threshold_scale": bad})
        with pytest.raises(ValueError, match=r"postprocess.threshold_scale must be in \(0, 1\]"):
            build_task(config.model, config.target, config.loss, config.postprocess, SPACING)
