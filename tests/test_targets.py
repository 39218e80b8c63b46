"""Dense training targets: ball label maps and Gaussian heatmaps, and their renderers."""

from __future__ import annotations

import numpy as np
import pytest

from cryokit.coords import voxel_to_cell
from cryokit.data.targets import BallTargets, GaussianTargets, ball_label_map, class_radii_voxels, gaussian_heatmaps
from cryokit.particles import PARTICLES

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


@pytest.mark.parametrize("stride", [1, 2])
def test_renderers_draw_on_the_cell_grid_at_the_class_radius(stride):
    centres, classes = np.array([[9.0, 17.0, 13.0]]), np.array([3])
    radius_voxels = class_radii_voxels(SPACING)[3]
    balls = BallTargets(radius_fraction=0.5, stride=stride)((24, 40, 32), centres, classes, SPACING)
    expected = ball_label_map(
        (24 // stride, 40 // stride, 32 // stride),
        voxel_to_cell(centres, stride),
        classes,
        0.5 * radius_voxels / stride,
    )
    assert balls.shape == (24 // stride, 40 // stride, 32 // stride) and np.array_equal(balls.numpy(), expected)
    heat = GaussianTargets(radius_fraction=0.3, stride=stride)((24, 40, 32), centres, classes, SPACING)
    assert heat.shape == (6, 24 // stride, 40 // stride, 32 // stride) and float(heat[3].max()) > 0.8
