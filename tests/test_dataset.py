"""The patch dataset: deterministic under a seed with loader workers, targets where the picks are."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import make_kaggle_layout
from torch.utils.data import DataLoader

from cryokit.config import AugmentConfig, DataConfig, PatchConfig, TargetConfig
from cryokit.coords import angstrom_xyz_to_voxel_zyx
from cryokit.data.dataset import collate, split_runs
from cryokit.data.normalise import read_region
from cryokit.io import open_run_tomogram, read_picks
from cryokit.models.anchors import anchor_radii_voxels
from cryokit.models.build import build_dataset
from cryokit.models.detection_coder import decode_detections

PATCH = PatchConfig(size_zyx=(16, 32, 32), patches_per_epoch=6, batch_size=2)
RUNS = ("TS_a", "TS_b", "TS_c")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_kaggle_layout(root, runs=RUNS, shape_zyx=(24, 48, 44), tomo_types=("denoised",))
    return root


def test_split_runs_holds_out_whole_runs():
    assert split_runs(RUNS, ["TS_b"]) == (["TS_a", "TS_c"], ["TS_b"])
    with pytest.raises(ValueError, match="val_runs"):
        split_runs(RUNS, ["TS_x"])
    with pytest.raises(ValueError, match="val_runs"):
        split_runs(["TS_a"], ["TS_a"])


def _batches(dataset, workers, epoch=0):
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate)
    return list(loader)


def test_same_seed_same_batches_with_two_workers(root):
    dataset = build_dataset(
        DataConfig(root=str(root)), PATCH, TargetConfig(kind="balls"), AugmentConfig(elastic_p=0.5), RUNS, 7
    )
    first, again = _batches(dataset, 2), _batches(dataset, 2)
    assert len(first) == 3
    assert first[0]["image"].shape == (2, 1, 16, 32, 32) and first[0]["image"].dtype == torch.float32
    assert first[0]["target"].shape == (2, 16, 32, 32) and first[0]["target"].dtype == torch.int64
    assert isinstance(first[0]["centres_voxel_zyx"], list) and len(first[0]["class_indices"]) == 2
    for a, b in zip(first, again):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
        assert all(torch.equal(x, y) for x, y in zip(a["centres_voxel_zyx"], b["centres_voxel_zyx"]))
    in_process = _batches(dataset, 0)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, in_process))
    next_epoch = _batches(dataset, 0, epoch=1)
    assert not torch.equal(first[0]["image"], next_epoch[0]["image"])


def _tomogram_picks(root, run):
    tomogram = open_run_tomogram(root, "train", run)
    picks = read_picks(root, "train", [run])
    return tomogram, angstrom_xyz_to_voxel_zyx(picks[["x", "y", "z"]].to_numpy(), tomogram.voxel_spacing_angstrom_zyx)


def test_plain_patches_are_tomogram_regions_with_their_picks(root):
    patch = replace(PATCH, positive_share=1.0, patches_per_epoch=8)
    dataset = build_dataset(DataConfig(root=str(root)), patch, TargetConfig(kind="balls"), None, RUNS, 1)
    for index in range(len(dataset)):
        item = dataset[index]
        tomogram, picks_zyx = _tomogram_picks(root, item["run"])
        origin = item["origin_zyx"].numpy()
        assert np.array_equal(item["image"][0].numpy(), read_region(tomogram, origin, patch.size_zyx))
        centres = item["centres_voxel_zyx"].numpy().astype(np.float64) + origin
        assert len(centres) >= 1  # positive patches hold a particle
        assert np.abs(centres[:, None] - picks_zyx[None]).max(-1).min(1).max() < 1e-3
        _assert_balls_at_picks(item)


def _assert_balls_at_picks(item):
    target = item["target"].numpy()
    for centre, cls in zip(item["centres_voxel_zyx"].numpy(), item["class_indices"].numpy()):
        voxel = np.floor(centre + 0.5).astype(int)
        if np.all(voxel >= 0) and np.all(voxel < target.shape):
            assert target[tuple(voxel)] == cls + 1


def test_augmented_ball_and_gaussian_targets_sit_on_the_picks(root):
    augment = AugmentConfig(rotate_degrees=15.0, elastic_p=1.0)
    balls = build_dataset(
        DataConfig(root=str(root)), replace(PATCH, positive_share=1.0), TargetConfig(kind="balls"), augment, RUNS, 3
    )
    gauss = build_dataset(
        DataConfig(root=str(root)), replace(PATCH, positive_share=1.0), TargetConfig(kind="gaussian"), augment, RUNS, 3
    )
    seen = 0
    for index in range(len(balls)):
        item, heat = balls[index], gauss[index]
        assert torch.equal(item["image"], heat["image"])
        _assert_balls_at_picks(item)
        assert heat["target"].shape == (6, 16, 32, 32) and heat["target"].dtype == torch.float32
        for centre, cls in zip(heat["centres_voxel_zyx"].numpy(), heat["class_indices"].numpy()):
            voxel = np.floor(centre + 0.5).astype(int)
            if np.all(voxel >= 0) and np.all(voxel < (16, 32, 32)):
                assert heat["target"][(int(cls), *voxel)] > 0.8
                seen += 1
        assert (item["target"] > 0).any()
    assert seen >= len(balls)


def test_detection_targets_decode_to_the_picks(root):
    config = TargetConfig(kind="detection", stride=4)
    dataset = build_dataset(
        DataConfig(root=str(root)), replace(PATCH, positive_share=1.0), config, AugmentConfig(), RUNS, 5
    )
    batch = collate([dataset[i] for i in range(3)])
    assert batch["target"]["objectness"].shape == (3, 3, 4, 8, 8)
    assert batch["target"]["offset_zyx"].shape == (3, 3, 3, 4, 8, 8)
    anchors = anchor_radii_voxels(open_run_tomogram(root, "train", "TS_a").voxel_spacing_angstrom_zyx)
    for b in range(3):
        target = {k: v[b] for k, v in batch["target"].items()}
        one_hot = torch.nn.functional.one_hot(target["class_index"].clamp_min(0), 6).permute(0, 4, 1, 2, 3)
        decoded = decode_detections(
            target["objectness"], one_hot.float(), target["offset_zyx"], target["log_radius_ratio"], 4, anchors
        )
        centres = batch["centres_voxel_zyx"][b].numpy()
        inside = np.all((centres >= -0.5) & (centres < np.array([16, 32, 32]) - 0.5), axis=1)
        assert len(decoded.scores) == inside.sum() >= 1
        assert np.allclose(np.sort(decoded.centres_voxel_zyx, 0), np.sort(centres[inside], 0), atol=1e-3)


def test_from_config_and_bad_kind(root):
    data = DataConfig(root=str(root), val_runs=("TS_c",))
    train, val = split_runs(RUNS, data.val_runs)
    dataset = build_dataset(data, PATCH, TargetConfig(), None, train)
    assert [run.name for run in dataset.runs] == ["TS_a", "TS_b"] and len(dataset) == 6
    assert {dataset[i]["run"] for i in range(6)} <= {"TS_a", "TS_b"}
    with pytest.raises(ValueError, match="target.kind"):
        build_dataset(data, PATCH, TargetConfig(kind="boxes"), None, train)
    with pytest.raises(IndexError):
        dataset[6]


def test_half_resolution_targets_sit_on_the_cell_grid(root):
    """With target.stride 2 the ball label map lives on the 2x coarser cell grid, balls at the picks' cells."""
    from cryokit.coords import voxel_to_cell

    dataset = build_dataset(
        DataConfig(root=str(root)),
        replace(PATCH, positive_share=1.0),
        TargetConfig(kind="balls", stride=2),
        None,
        RUNS,
        5,
    )
    hits = total = 0
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["target"].shape == (8, 16, 16)
        cells = np.floor(voxel_to_cell(item["centres_voxel_zyx"].numpy(), 2) + 0.5).astype(int)
        for cell, class_index in zip(cells, item["class_indices"].numpy()):
            if np.all((cell >= 0) & (cell < (8, 16, 16))):
                total += 1
                hits += int(item["target"][tuple(cell)]) == class_index + 1
    assert total >= 3 and hits >= 0.9 * total
    with pytest.raises(ValueError, match="multiple of the target stride 4"):
        build_dataset(
            DataConfig(root=str(root)),
            replace(PATCH, size_zyx=(16, 30, 32)),
            TargetConfig(kind="detection", stride=4),
            None,
            RUNS,
        )


def test_several_tomo_types_each_patch_from_one_normalised_on_its_own(tmp_path):
    make_kaggle_layout(tmp_path, runs=("TS_a", "TS_b"), shape_zyx=(24, 48, 44), tomo_types=("denoised", "wbp"))
    data = DataConfig(root=str(tmp_path), train_tomo_types=("denoised", "wbp"))
    patch = replace(PATCH, patches_per_epoch=24)
    dataset = build_dataset(data, patch, TargetConfig(kind="balls"), None, ("TS_a", "TS_b"), 3)
    drawn = set()
    for index in range(len(dataset)):
        item = dataset[index]
        tomogram = open_run_tomogram(tmp_path, "train", item["run"], item["tomo_type"])
        expected = read_region(tomogram, item["origin_zyx"].numpy(), patch.size_zyx)
        assert np.array_equal(item["image"][0].numpy(), expected), item["tomo_type"]
        drawn.add(item["tomo_type"])
    assert drawn == {"denoised", "wbp"}
    # One tomo type: the items are those of the single-type dataset (no extra random draw).
    single = build_dataset(DataConfig(root=str(tmp_path)), patch, TargetConfig(kind="balls"), None, ("TS_a",), 3)
    listed = build_dataset(
        replace(data, train_tomo_types=("denoised",)), patch, TargetConfig(kind="balls"), None, ("TS_a",), 3
    )
    assert all(torch.equal(single[i]["image"], listed[i]["image"]) for i in range(4))
    with pytest.raises(FileNotFoundError, match="ctfdeconvolved"):
        build_dataset(replace(data, train_tomo_types=("ctfdeconvolved",)), patch, TargetConfig(), None, ("TS_a",), 3)
