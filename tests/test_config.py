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
        ("train:\n  epochs: many\n", r"config key 'train.epochs': cannot read 'many' as int"),
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
