"""The torch peak decoder (max-pool NMS, sub-voxel refinement, thresholds on the maps' device) gives
today's picks: the scipy decoder of ``cryokit.postprocess`` through ``SegmentationTask.decode``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cryokit.particles import PARTICLE_NAMES
from cryokit.postprocess import find_peaks_maxpool, find_peaks_maxpool_torch, maps_to_picks
from cryokit.tasks import PeakDecoding, SegmentationTask

SPACING_ZYX = (10.0, 10.0, 10.0)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def trained_looking_maps(shape_zyx=(40, 72, 68), per_class=12, seed=0) -> np.ndarray:
    """(6, Z, Y, X) maps with Gaussian peaks at fractional centres (some at the border, some close
    pairs, a flat plateau), plus noise that crosses the candidate floor here and there."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape_zyx], indexing="ij"), axis=-1)
    maps = rng.random((6, *shape_zyx), dtype=np.float32) * np.float32(0.06)
    for channel in range(6):
        centres = rng.uniform(0, np.array(shape_zyx) - 1, (per_class, 3))
        centres[0] = [0.2, 10.4, 20.7]  # on the border: no refinement along z
        centres[1], centres[2] = [20.3, 30.1, 30.2], [20.6, 30.4, 33.9]  # close: NMS keeps one or both
        for centre, height in zip(centres, rng.uniform(0.2, 0.95, per_class)):
            sigma = rng.uniform(1.0, 2.5)
            maps[channel] += height * np.exp(-np.sum((grid - centre) ** 2, axis=-1) / (2 * sigma**2))
    maps[2, 5:7, 5:7, 5:7] = 0.9  # a plateau of equal scores: one peak, the first in C order
    return np.clip(maps, 0, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("refine", [True, False])
def test_torch_peaks_equal_scipy_peaks(device, refine):
    score = trained_looking_maps()[0]
    for radius in (1.5, 3.0, 4.2):
        want_centres, want_scores = find_peaks_maxpool(score, radius, 0.05, refine=refine)
        got_centres, got_scores = find_peaks_maxpool_torch(torch.as_tensor(score, device=device), radius, 0.05, refine)
        assert len(want_scores) > 10
        np.testing.assert_array_equal(got_scores, want_scores)
        np.testing.assert_allclose(got_centres, want_centres, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_segmentation_task_decodes_torch_maps_as_today(device):
    maps = trained_looking_maps()
    today = SegmentationTask("balls", loss=None).decode(maps, SPACING_ZYX, "TS_1")
    task = SegmentationTask("balls", loss=None, decoding=PeakDecoding(backend="torch"))
    new = task.decode(torch.as_tensor(maps, device=device), SPACING_ZYX, "TS_1")
    assert len(today) > 30 and set(today["particle_type"]) == set(PARTICLE_NAMES)
    pd.testing.assert_frame_equal(new, today, check_exact=False, rtol=0, atol=1e-9)


def test_auto_backend_decodes_a_cpu_tensor_with_scipy_and_gives_the_same_picks(monkeypatch):
    maps = trained_looking_maps(seed=1)
    today = maps_to_picks(maps, PARTICLE_NAMES, SPACING_ZYX, "TS_1", 0.05)
    import cryokit.postprocess as postprocess

    def no_torch(*args, **kwargs):
        raise AssertionError("the CPU default must stay scipy's max filter")

    monkeypatch.setattr(postprocess, "find_peaks_maxpool_torch", no_torch)
    auto = maps_to_picks(torch.as_tensor(maps), PARTICLE_NAMES, SPACING_ZYX, "TS_1", 0.05)
    pd.testing.assert_frame_equal(auto, today)


def test_torch_decoder_rejects_bad_input():
    with pytest.raises(ValueError, match="3 axes"):
        find_peaks_maxpool_torch(torch.zeros(4, 4), 2.0, 0.1)
    with pytest.raises(ValueError, match="radius_voxels"):
        find_peaks_maxpool_torch(torch.zeros(4, 4, 4), 0.0, 0.1)
    with pytest.raises(ValueError, match="backend"):
        PeakDecoding(backend="cupy")
    empty, scores = find_peaks_maxpool_torch(torch.zeros(6, 6, 6), 2.0, 0.5)
    assert empty.shape == (0, 3) and scores.shape == (0,)
