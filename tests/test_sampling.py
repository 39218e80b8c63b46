"""Patch origins, class-balanced particle choice and picks in a patch."""

from __future__ import annotations

import numpy as np
import pytest

from cryokit.data.sampling import (
    choose_particle,
    clamp_origin,
    class_sampling_weights,
    particle_patch_origin,
    picks_in_patch,
    random_patch_origin,
)


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
