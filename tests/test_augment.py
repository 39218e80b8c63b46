"""Augmentations move volume, label map and picks together, reproducibly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from cryokit.config import AugmentConfig
from cryokit.data.augment import Augmenter, Sample, apply_augmentation, augment_sample
from cryokit.data.targets import ball_label_map

OFF = Augmenter.from_config(
    AugmentConfig(
        flip_p=0,
        rot90_p=0,
        rotate_degrees=0,
        scale_fraction=0,
        elastic_p=0,
        intensity_p=0,
        noise_p=0,
        gamma_p=0,
        blur_p=0,
        bias_p=0,
        bandpass_p=0,
        wedge_p=0,
    )  # fmt: skip
)
FAMILIES = {
    "flip": replace(OFF, flip_p=0.7),
    "rot90": replace(OFF, rot90_p=1.0),
    "rotate": replace(OFF, rotate_degrees=25.0),
    "scale": replace(OFF, scale_fraction=0.1),
    "elastic": replace(OFF, elastic_p=1.0, elastic_magnitude_voxels=2.0, elastic_spacing_voxels=12.0),
    "all": Augmenter.from_config(
        AugmentConfig(
            flip_p=0.5,
            rot90_p=0.5,
            rotate_degrees=20.0,
            scale_fraction=0.08,
            elastic_p=1.0,
            elastic_magnitude_voxels=1.5,
            elastic_spacing_voxels=16.0,
            intensity_p=1.0,
            noise_p=1.0,
            noise_std=0.05,
            # geometry and the linear intensity families: the appearance ones have their own entries below
            gamma_p=0,
            blur_p=0,
            bias_p=0,
            bandpass_p=0,
            wedge_p=0,
        )
    ),
}
# Appearance only: values change, nothing moves (cryokit.data.appearance).
FAMILIES.update(
    {
        "gamma": replace(OFF, gamma_p=1.0, gamma_log=0.4),
        "blur": replace(OFF, blur_p=1.0, blur_std_voxels=1.5),
        "bias": replace(OFF, bias_p=1.0, bias_coefficient=0.5),
        "bandpass": replace(OFF, bandpass_p=1.0, bandpass_lowpass_voxels=1.5, bandpass_highpass_voxels=6.0),
        "wedge": replace(OFF, wedge_p=1.0, wedge_tilt_degrees=(40.0, 60.0)),
    }
)
EXACT = {"flip", "rot90", "gamma", "bias"}
OUT_ZYX = (32, 40, 40)


def _dots_sample(seed: int = 0, shape=(44, 52, 52), n=14) -> Sample:
    """Bright blurred dots at integer voxels at least 6 voxels apart, with a ball label map."""
    rng = np.random.default_rng(seed)
    dots: list[np.ndarray] = []
    while len(dots) < n:
        candidate = rng.integers(6, np.asarray(shape) - 6)
        if all(np.abs(candidate - d).max() >= 6 for d in dots):
            dots.append(candidate)
    centres = np.asarray(dots, dtype=np.float64)
    volume = np.zeros(shape, np.float32)
    volume[tuple(np.asarray(dots).T)] = 1.0
    volume = gaussian_filter(volume, 1.0) * 100  # peak ~6, far above the noise
    classes = rng.integers(0, 6, n)
    labels = ball_label_map(shape, centres, classes, 2.5)
    return Sample(torch.from_numpy(volume), centres, classes, torch.from_numpy(labels))


def _peak_errors(sample: Sample) -> np.ndarray:
    """Per pick well inside the patch: distance (max norm) from the pick to the argmax of its 5^3 box."""
    image = sample.image_zyx.numpy()
    errors = []
    for point in sample.centres_voxel_zyx:
        voxel = np.round(point).astype(int)
        if np.any(voxel < 2) or np.any(voxel > np.asarray(image.shape) - 3):
            continue
        box = image[tuple(slice(v - 2, v + 3) for v in voxel)]
        peak = np.asarray(np.unravel_index(box.argmax(), box.shape)) + voxel - 2
        errors.append(np.abs(peak - point).max())
    return np.asarray(errors)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_pick_stays_on_its_dot(family):
    config = FAMILIES[family]
    for seed in range(3):
        out = augment_sample(_dots_sample(seed), config, torch.Generator().manual_seed(seed), OUT_ZYX)
        assert out.image_zyx.shape == OUT_ZYX and out.label_map_zyx.shape == OUT_ZYX
        errors = _peak_errors(out)
        assert len(errors) >= 5
        if family in EXACT:
            assert errors.max() == 0
            assert np.allclose(out.centres_voxel_zyx, np.round(out.centres_voxel_zyx))
        else:
            assert errors.max() <= 1.0, (family, seed, errors)


def test_geometry_actually_moves_things():
    sample = _dots_sample(1)
    for family in ("rotate", "elastic", "flip"):
        out = augment_sample(sample, FAMILIES[family], torch.Generator().manual_seed(5), OUT_ZYX)
        cropped = sample.centres_voxel_zyx - (np.asarray(sample.image_zyx.shape) - OUT_ZYX) // 2
        assert np.abs(out.centres_voxel_zyx - cropped).max() > 0.5, family


def test_label_map_moves_with_the_image():
    sample = _dots_sample(2)
    sample = replace(sample, image_zyx=(sample.label_map_zyx > 0).float())
    no_intensity = replace(FAMILIES["all"], intensity_p=0.0, noise_p=0.0)
    for seed in range(3):
        out = augment_sample(sample, no_intensity, torch.Generator().manual_seed(seed), OUT_ZYX)
        agree = ((out.image_zyx > 0.5) == (out.label_map_zyx > 0)).float().mean()
        assert agree > 0.99
        assert set(np.unique(out.label_map_zyx.numpy())) <= set(np.unique(sample.label_map_zyx.numpy()))
        for point, cls in zip(out.centres_voxel_zyx, out.class_indices):
            voxel = np.round(point).astype(int)
            if np.all(voxel >= 0) and np.all(voxel < OUT_ZYX):
                assert out.label_map_zyx[tuple(voxel)] == cls + 1


def test_same_seed_same_sample_and_different_seed_differs():
    sample = _dots_sample(3)
    first = augment_sample(sample, FAMILIES["all"], torch.Generator().manual_seed(11), OUT_ZYX)
    again = augment_sample(sample, FAMILIES["all"], torch.Generator().manual_seed(11), OUT_ZYX)
    other = augment_sample(sample, FAMILIES["all"], torch.Generator().manual_seed(12), OUT_ZYX)
    assert torch.equal(first.image_zyx, again.image_zyx)
    assert np.array_equal(first.centres_voxel_zyx, again.centres_voxel_zyx)
    assert not torch.equal(first.image_zyx, other.image_zyx)


def test_switched_off_is_a_centre_crop():
    sample = _dots_sample(4)
    out = augment_sample(sample, OFF, torch.Generator().manual_seed(0), OUT_ZYX)
    start = (np.asarray(sample.image_zyx.shape) - OUT_ZYX) // 2
    window = tuple(slice(s, s + n) for s, n in zip(start, OUT_ZYX))
    assert torch.equal(out.image_zyx, sample.image_zyx[window])
    assert np.array_equal(out.centres_voxel_zyx, sample.centres_voxel_zyx - start)
    assert np.all(OFF.margin_bound_zyx(OUT_ZYX) == 0)


def test_margins_are_enough_context_for_every_draw():
    config = replace(
        FAMILIES["all"],
        rotate_degrees=30.0,
        scale_fraction=0.1,
        elastic_magnitude_voxels=3.0,
        intensity_p=0.0,
        noise_p=0.0,
        flip_p=0.0,
        rot90_p=0.0,
    )
    bound = config.margin_bound_zyx(OUT_ZYX)
    for seed in range(8):
        params = config.draw(torch.Generator().manual_seed(seed), OUT_ZYX)
        margin = params.margin_zyx()
        assert np.all(margin <= bound) and np.all(margin > 0)
        for context in (margin, bound):  # the draw's own margin, and the bound
            ones = Sample(torch.ones(tuple(np.asarray(OUT_ZYX) + 2 * context)), np.zeros((0, 3)), np.zeros(0, np.int64))
            assert apply_augmentation(ones, params).image_zyx.min() > 0.999
    assert replace(config, elastic_p=0.0).draw(torch.Generator(), OUT_ZYX).margin_zyx().sum() > 0


def test_affine_probability_zero_switches_rotation_and_zoom_off():
    config = replace(OFF, rotate_degrees=20.0, scale_fraction=0.1, affine_p=0.0)
    params = config.draw(torch.Generator().manual_seed(0), OUT_ZYX)
    assert params.matrix is None and params.margin_zyx().tolist() == [0, 0, 0]
    assert np.all(config.margin_bound_zyx(OUT_ZYX) == 0)


def test_intensity_and_noise_change_values_only():
    sample = _dots_sample(5)
    linear = replace(OFF, intensity_p=1.0, intensity_fraction=0.2)
    out = augment_sample(sample, linear, torch.Generator().manual_seed(0), sample.image_zyx.shape)
    assert np.array_equal(out.centres_voxel_zyx, sample.centres_voxel_zyx)
    x, y = sample.image_zyx.double().ravel(), out.image_zyx.double().ravel()
    slope, intercept = np.polyfit(x.numpy(), y.numpy(), 1)
    assert 0.8 <= slope <= 1.2 and abs(intercept) <= 0.2 and (slope, intercept) != pytest.approx((1, 0))
    assert np.allclose(y.numpy(), slope * x.numpy() + intercept, atol=1e-4)
    noisy = augment_sample(sample, replace(OFF, noise_p=1.0, noise_std=0.1), torch.Generator().manual_seed(0))
    assert float((noisy.image_zyx - sample.image_zyx).std()) == pytest.approx(0.1, rel=0.05)


def test_output_larger_than_input_raises():
    with pytest.raises(ValueError, match="out_size_zyx"):
        augment_sample(_dots_sample(0), OFF, torch.Generator(), (64, 64, 64))


@pytest.mark.parametrize("out_zyx", [(32, 40, 40), (5, 2, 9)])
def test_elastic_field_upsampling_equals_trilinear_interpolation(out_zyx):
    from cryokit.data.augment import _upsample_field

    coarse = torch.randn(3, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.interpolate(coarse[None], size=out_zyx, mode="trilinear", align_corners=True)
    assert torch.allclose(_upsample_field(coarse, out_zyx), expected[0].permute(1, 2, 3, 0), atol=1e-5)


def test_default_augmenter_changes_nothing_and_mirrors_the_config():
    assert {f for f in Augmenter.__dataclass_fields__} == {f for f in AugmentConfig.__dataclass_fields__}
    sample = _dots_sample(6)
    out = augment_sample(sample, Augmenter(), torch.Generator().manual_seed(0))
    assert torch.equal(out.image_zyx, sample.image_zyx)
    assert np.array_equal(out.centres_voxel_zyx, sample.centres_voxel_zyx)
    with pytest.raises(ValueError, match="probabilities"):
        Augmenter(flip_p=1.5)
