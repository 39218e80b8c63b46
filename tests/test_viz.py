"""napari viewing: the layers prepared without napari, and the install hint when it is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import REAL_SPACING_ZYX

from cryokit.coords import angstrom_xyz_to_voxel_zyx
from cryokit.particles import particle
from cryokit.viz import NAPARI_INSTALL_HINT, napari_layers, napari_view


def test_napari_layers_image_and_points_in_voxel_zyx(kaggle_root):
    root, written = kaggle_root
    layers = napari_layers(root, "TS_a", level=0)
    image, image_kwargs, kind = layers[0]
    assert kind == "image" and image.shape == (20, 36, 40)
    np.testing.assert_allclose(image, written["TS_a"][0]["denoised"])
    assert image_kwargs["contrast_limits"][0] < image_kwargs["contrast_limits"][1]
    points = {kwargs["name"]: (data, kwargs) for data, kwargs, kind in layers[1:] if kind == "points"}
    assert set(points) == {"apo-ferritin", "ribosome", "thyroglobulin"}  # types with picks only
    data, kwargs = points["ribosome"]
    np.testing.assert_allclose(data, angstrom_xyz_to_voxel_zyx(written["TS_a"][1]["ribosome"], REAL_SPACING_ZYX))
    assert kwargs["size"] == pytest.approx(2 * 150.0 / np.mean(REAL_SPACING_ZYX))
    np.testing.assert_allclose(kwargs["face_color"][:3], np.array(particle("ribosome").color_rgba[:3]) / 255)


def test_napari_layers_at_level_one_and_without_picks(kaggle_root):
    root, written = kaggle_root
    data, kwargs = {k["name"]: (d, k) for d, k, kind in napari_layers(root, "TS_a", level=1)[1:]}["apo-ferritin"]
    spacing_level_1 = np.asarray(REAL_SPACING_ZYX) * 2
    np.testing.assert_allclose(data, angstrom_xyz_to_voxel_zyx(written["TS_a"][1]["apo-ferritin"], spacing_level_1))
    assert [kind for _, _, kind in napari_layers(root, "TS_t", split="test")] == ["image"]


def test_napari_view_without_napari_says_how_to_install(kaggle_root, monkeypatch):
    root, _ = kaggle_root
    monkeypatch.setitem(sys.modules, "napari", None)  # import napari -> ImportError
    with pytest.raises(ImportError, match=r'pip install "napari\[all\]"'):
        napari_view(root, "TS_a")
    assert "napari[all]" in NAPARI_INSTALL_HINT
