from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cryokit.coords import (
    angstrom_xyz_to_voxel_zyx,
    as_spacing_zyx,
    radius_angstrom_to_voxels,
    voxel_zyx_to_angstrom_xyz,
)

SPACING_ZYX = (10.012444196428572, 10.012444196428572, 10.012444537618887)


def test_axis_order_and_units_on_a_known_point():
    # x = 100 A, y = 200 A, z = 300 A at 10 A/voxel is voxel z=30, y=20, x=10.
    voxel_zyx = angstrom_xyz_to_voxel_zyx(np.array([[100.0, 200.0, 300.0]]), 10.0)
    np.testing.assert_allclose(voxel_zyx, [[30.0, 20.0, 10.0]])
    np.testing.assert_allclose(voxel_zyx_to_angstrom_xyz(voxel_zyx, 10.0), [[100.0, 200.0, 300.0]])


def test_per_axis_spacing_is_applied_to_the_right_axis():
    voxel_zyx = angstrom_xyz_to_voxel_zyx(np.array([[60.0, 40.0, 20.0]]), (2.0, 4.0, 6.0))
    np.testing.assert_allclose(voxel_zyx, [[10.0, 10.0, 10.0]])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 20), st.just(3)), elements=st.floats(-1e5, 1e5)))
def test_round_trip(centres_angstrom_xyz):
    voxel_zyx = angstrom_xyz_to_voxel_zyx(centres_angstrom_xyz, SPACING_ZYX)
    back_xyz = voxel_zyx_to_angstrom_xyz(voxel_zyx, SPACING_ZYX)
    np.testing.assert_allclose(back_xyz, centres_angstrom_xyz, atol=1e-9)
    assert back_xyz.shape == centres_angstrom_xyz.shape


def test_far_edge_error_of_assuming_10_angstrom():
    # COMPETITION.md 2.1: using 10 instead of 10.0124 shifts the far edge by ~8 A.
    far_edge_xyz = voxel_zyx_to_angstrom_xyz(np.array([[183, 629, 629]]), SPACING_ZYX)
    assert 7.0 < far_edge_xyz[0, 0] - 629 * 10 < 9.0


def test_radius_in_voxels():
    assert radius_angstrom_to_voxels(60.0, 10.0) == 6.0
    assert radius_angstrom_to_voxels(60.0, (20.0, 20.0, 20.0)) == 3.0


@pytest.mark.parametrize("bad", [0.0, -1.0, (1.0, 2.0), (1.0, np.nan, 1.0)])
def test_bad_spacing_is_refused(bad):
    with pytest.raises(ValueError, match="voxel spacing"):
        as_spacing_zyx(bad)


def test_bad_point_shape_is_refused():
    with pytest.raises(ValueError, match=r"centres_angstrom_xyz must have shape \(N, 3\)"):
        angstrom_xyz_to_voxel_zyx(np.zeros((4, 2)), 10.0)
