"""Typed configuration: files, overrides, round trips, and loud failures on typos."""

from __future__ import annotations

import json

import pytest

from cryokit.config import MODEL_PRESETS, RunConfig, apply_overrides, from_dict, load_config, to_dict


def test_round_trip_through_a_plain_dict():
    config = apply_overrides(
        RunConfig(), ["data.val_runs=[TS_5_4]", "patch.size_zyx=[32,64,64]", "postprocess.thresholds={ribosome: 0.3}"]
    )
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(config))))
    assert again == config
    assert again.data.val_runs == ("TS_5_4",) and again.patch.size_zyx == (32, 64, 64)
    assert again.postprocess.thresholds == {"ribosome": 0.3}


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 0.01\n  epochs: 5\nmodel:\n  channels: [8, 16]\n")
    config = load_config(path, ["train.epochs=7", "train.amp=false"])
    assert config.train.lr == 0.01 and config.train.epochs == 7 and config.train.amp is False
    assert config.model.channels == (8, 16) and config.model.strides == RunConfig().model.strides


def test_json_file(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"data": {"level": 1}}))
    assert load_config(tmp_path / "run.json").data.level == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  lrr: 0.1\n", r"unknown config key\(s\) train.lrr; known keys of train: amp, "),
        ("trainer: {}\n", r"unknown config key\(s\) trainer"),
        ("train:\n  epochs: many\n", r"config key 'train.epochs' takes an integer, got 'many'"),
        ("train: [1, 2]\n", r"config key 'train'"),
        ("- 1\n", r"must hold a mapping"),
        ("train: {epochs: 3\n", r"cannot be parsed"),
    ],
)
def test_bad_files_name_the_key_or_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_bad_override_syntax():
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(None, ["train.lr"])


def test_model_presets_switch_the_coupled_fields():
    detector = apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"])
    assert (detector.model.name, detector.target.kind, detector.target.stride, detector.loss.name) == (
        "yolo3d",
        "detection",
        4,
        "detection",
    )
    assert apply_overrides(detector, MODEL_PRESETS["unet"]).target.kind == "balls"


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        RunConfig().train.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=2.7", r"'train.epochs' takes an integer, got 2.7"),
        ("train.epochs=true", r"'train.epochs' takes an integer, got True"),
        ("patch.size_zyx=[16,32]", r"'patch.size_zyx' takes a list of 3 integers, got 2 value\(s\)"),
        ("postprocess.thresholds=0.5", r"'postprocess.thresholds' takes a mapping of strings to numbers, got 0.5"),
        ("model.channels=16", r"'model.channels' takes a list of integers, got 16"),
        ("train.lr=fast", r"'train.lr' takes a number, got 'fast'"),
        ("train.amp=maybe", r"'train.amp' takes true or false, got 'maybe'"),
        ("data.tomo_type=[denoised]", r"'data.tomo_type' takes a string"),
    ],
)
def test_set_refuses_wrong_types_and_shapes_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(RunConfig(), [override])


def test_set_coerces_what_is_unambiguous():
    config = apply_overrides(
        RunConfig(), ["data.val_runs=TS_5_4", "train.epochs=3.0", "train.lr=1", "postprocess.thresholds={ribosome: 1}"]
    )
    assert config.data.val_runs == ("TS_5_4",)  # a bare name is a list of one, not its letters
    assert config.train.epochs == 3 and isinstance(config.train.epochs, int)
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.postprocess.thresholds == {"ribosome": 1.0}


def test_config_differences_name_the_changed_keys():
    from cryokit.config import config_differences

    changed = apply_overrides(RunConfig(), ["train.lr=0.01", "data.val_runs=[TS_1]"])
    assert config_differences(RunConfig(), changed) == [("data.val_runs", [], ["TS_1"]), ("train.lr", 0.002, 0.01)]


def test_the_demo_recipe_gives_each_family_its_stride_and_patch_budget():
    from cryokit.demo.pipeline import DEMO_PATCHES_PER_EPOCH, demo_training_config

    unet, detector = demo_training_config(), demo_training_config(model="yolo3d")
    assert (unet.model.name, unet.target.stride, unet.patch.patches_per_epoch) == ("dynunet", 2, 192)
    assert (detector.model.name, detector.target.kind, detector.target.stride) == ("yolo3d", "detection", 4)
    assert detector.patch.patches_per_epoch == DEMO_PATCHES_PER_EPOCH["yolo3d"] == 192
    assert detector.model.backbone_width == 32 and not detector.model.backbone_weights  # MedicalNet's is 64
    # Everything else is the one recipe: the same data level, patch size, epochs and augmentations.
    assert (unet.data, unet.patch.size_zyx, unet.train, unet.augment) == (
        detector.data,
        detector.patch.size_zyx,
        detector.train,
        detector.augment,
    )
    # The U-Net weighs its particle classes by volume and smooths its maps; the detector does neither, and
    # the quick recipe's tiny U-Net keeps the weighting but not the smoothing (its maps are too faint).
    assert (unet.loss.particle_weighting, unet.postprocess.smooth_sigma_angstrom) == ("volume", 40.0)
    assert (detector.loss.particle_weighting, detector.postprocess.smooth_sigma_angstrom) == ("uniform", 0.0)
    quick = demo_training_config(quick=True)
    assert (quick.loss.particle_weighting, quick.postprocess.smooth_sigma_angstrom) == ("volume", 0.0)
    with pytest.raises(ValueError, match="model 'resnet': must be one of"):
        demo_training_config(model="resnet")
