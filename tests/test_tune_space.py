"""The search space: one table, narrowed from files, conditional keys, sampling into valid configs."""

from __future__ import annotations

import json

import optuna
import pytest

from cryokit.config import MODEL_PRESETS, RunConfig, apply_overrides
from cryokit.tuning.space import SEARCH_SPACE, default_space, load_space


def _trial(seed: int = 0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return study.ask()


def test_every_key_of_the_table_is_a_config_key_and_samples_into_a_valid_config():
    base = RunConfig()
    for seed in range(5):
        overrides = default_space().sample(_trial(seed), base)
        config = apply_overrides(base, overrides)  # raises on a key or value the config refuses
        assert len(config.model.strides) == len(config.model.channels) - 1
        assert config.train.lr == overrides["train.lr"]


def test_conditional_keys_follow_the_model_family():
    unet = default_space().sample(_trial(), RunConfig())
    assert "loss.dice_weight" in unet and "loss.lambda_box" not in unet
    yolo = apply_overrides(RunConfig(), MODEL_PRESETS["yolo3d"])
    sampled = default_space().sample(_trial(), yolo)
    assert {"loss.lambda_focal", "loss.lambda_fbeta", "loss.lambda_box"} <= set(sampled)
    assert "loss.dice_weight" not in sampled and "model.strides" not in sampled


def test_narrowing_from_a_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "train.lr: {low: 1.0e-4, high: 1.0e-3}\n"
        "model.channels: {choices: [[8, 16, 32], [16, 32, 64]]}\n"
        "augment.noise_std: null\n"
        "postprocess.radius_fraction: {choices: [0.5]}\n"
    )
    space = load_space(path)
    described = space.describe()
    assert described["train.lr"] == {"low": 1e-4, "high": 1e-3, "log": True}
    assert described["model.channels"]["choices"] == ([8, 16, 32], [16, 32, 64])
    assert "augment.noise_std" not in space.keys and len(space.keys) == len(SEARCH_SPACE) - 1
    for seed in range(4):
        sampled = space.sample(_trial(seed), RunConfig())
        assert 1e-4 <= sampled["train.lr"] <= 1e-3 and sampled["postprocess.radius_fraction"] == 0.5
        assert sampled["model.channels"] in ([8, 16, 32], [16, 32, 64])


def test_json_narrowing_and_int_ranges(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"model.num_res_units": {"low": 2, "high": 2}}))
    assert default_space().narrowed(None) == default_space()
    assert load_space(path).sample(_trial(), RunConfig())["model.num_res_units"] == 2


@pytest.mark.parametrize(
    "narrowing, message",
    [
        (
            {"train.learning_rate": {"low": 1e-4, "high": 1e-3}, "model.width": None},
            "unknown key\\(s\\) model.width, train.learning_rate",
        ),
        ({"train.lr": {"low": 1e-2, "high": 1e-4}}, "train.lr.*low <= high"),
        ({"train.lr": {"low": 0.0, "high": 1e-3}}, "train.lr.*log range needs low > 0"),
        ({"train.lr": {"choices": []}}, "train.lr.*non-empty 'choices'"),
        ({"train.lr": {"lo": 1e-3}}, "train.lr.*unknown field"),
        ({"train.lr": 1e-3}, "train.lr.*expected a mapping or null"),
    ],
)
def test_bad_narrowing_names_the_key(narrowing, message):
    with pytest.raises(ValueError, match=message):
        default_space().narrowed(narrowing)


def test_space_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_space(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train.lrr: {low: 1, high: 2}\n")
    with pytest.raises(ValueError, match=f"{bad}.*unknown key\\(s\\) train.lrr"):
        load_space(bad)
