"""The hyperparameter search space: one declarative table of dotted config keys -> distributions.

``SEARCH_SPACE`` is the only place the space is written down. A YAML/JSON file (or a dict) narrows it
(``SearchSpace.narrowed``): per key, new ``low``/``high``/``log``/``step`` or a ``choices`` list, or
``null`` to leave the key out of the search (it keeps the base config's value). Keys that are not in
the table are an error naming them. Sampling a trial gives ``{dotted key: value}`` overrides that
``cryokit.config.apply_overrides`` applies to the base config.

Two keys are conditional on the base config (``when``): the Dice/CE balance applies to the U-Nets'
``dice_ce`` loss, the detector's lambdas to ``yolo3d``. ``model.channels`` sets width *and* depth; the
U-Net's ``model.strides`` follow it (2 per level), so the two always agree.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from cryokit.config import RunConfig, to_dict
from cryokit.training.tracking import flatten

__all__ = ["ParamSpec", "SearchSpace", "SEARCH_SPACE", "default_space", "load_space"]

# key: {"low", "high", "log", "step"} (float or int range; int when "int": True) or {"choices": [...]};
# "when": {dotted key: value} limits a key to base configs where those keys have that value.
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "train.weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "model.channels": {"choices": [[8, 16, 32], [16, 32, 64], [16, 32, 64, 128], [32, 64, 128, 256]]},
    "model.num_res_units": {"low": 0, "high": 2, "int": True},
    "model.dropout": {"low": 0.0, "high": 0.3},
    "patch.size_zyx": {"choices": [[32, 64, 64], [64, 96, 96], [64, 128, 128]]},
    "augment.flip_p": {"low": 0.0, "high": 0.5},
    "augment.rotate_degrees": {"low": 0.0, "high": 30.0},
    "augment.scale_fraction": {"low": 0.0, "high": 0.15},
    "augment.intensity_fraction": {"low": 0.0, "high": 0.3},
    "augment.noise_std": {"low": 0.0, "high": 0.3},
    "loss.dice_weight": {"low": 0.0, "high": 2.0, "when": {"loss.name": "dice_ce"}},
    "loss.ce_weight": {"low": 0.1, "high": 2.0, "when": {"loss.name": "dice_ce"}},
    "loss.particle_weight": {"low": 4.0, "high": 128.0, "log": True, "when": {"loss.name": "dice_ce"}},
    "loss.lambda_focal": {"low": 0.2, "high": 5.0, "log": True, "when": {"model.name": "yolo3d"}},
    "loss.lambda_fbeta": {"low": 0.2, "high": 5.0, "log": True, "when": {"model.name": "yolo3d"}},
    "loss.lambda_box": {"low": 0.2, "high": 5.0, "log": True, "when": {"model.name": "yolo3d"}},
    "postprocess.radius_fraction": {"low": 0.3, "high": 0.9},
    "target.radius_fraction": {"low": 0.3, "high": 0.8},
}
_SPEC_FIELDS = {"low", "high", "log", "step", "int", "choices", "when"}


@dataclass(frozen=True)
class ParamSpec:
    """One searched config key: a float/int range or a list of choices (any JSON values)."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple | None = None
    when: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_mapping(cls, key: str, values: Mapping[str, Any]) -> "ParamSpec":
        unknown = sorted(set(values) - _SPEC_FIELDS)
        if unknown:
            raise ValueError(f"search space key {key!r}: unknown field(s) {unknown}; use {sorted(_SPEC_FIELDS)}")
        choices = values.get("choices")
        spec = cls(
            key,
            values.get("low"),
            values.get("high"),
            bool(values.get("log", False)),
            values.get("step"),
            bool(values.get("int", False)),
            tuple(choices) if choices is not None else None,
            tuple(sorted(dict(values.get("when", {})).items())),
        )
        spec.check()
        return spec

    def check(self) -> None:
        """Raise ValueError naming the key when the spec cannot be sampled."""
        if self.choices is not None:
            if self.low is not None or self.high is not None or not self.choices:
                raise ValueError(f"search space key {self.key!r}: give either a non-empty 'choices' or 'low'/'high'")
            return
        if self.low is None or self.high is None:
            raise ValueError(f"search space key {self.key!r}: a range needs 'low' and 'high'")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"search space key {self.key!r}: need finite low <= high, got {self.low}, {self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError(f"search space key {self.key!r}: a log range needs low > 0 and no step")

    def narrowed(self, values: Mapping[str, Any]) -> "ParamSpec":
        """This spec with some fields replaced; ``choices`` turns a range into a list and back."""
        merged = {
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "int": self.integer,
            "choices": list(self.choices) if self.choices is not None else None,
            "when": dict(self.when),
        }
        if "choices" in values:
            merged.update(low=None, high=None, log=False, step=None)
        elif "low" in values or "high" in values:
            merged["choices"] = None
        merged.update(values)
        return ParamSpec.from_mapping(self.key, {k: v for k, v in merged.items() if v is not None})

    def applies_to(self, flat_base: Mapping[str, Any]) -> bool:
        return all(flat_base.get(k) == v for k, v in self.when)

    def suggest(self, trial) -> Any:
        """The value for ``trial`` (choices are offered to Optuna as JSON strings: lists are not allowed)."""
        if self.choices is not None:
            encoded = [json.dumps(c) for c in self.choices]
            return json.loads(trial.suggest_categorical(self.key, encoded))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of ``ParamSpec``; ``sample(trial, base)`` gives the overrides of one trial."""

    specs: tuple[ParamSpec, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.specs)

    def narrowed(self, narrowing: Mapping[str, Any] | None) -> "SearchSpace":
        """Replace fields per key (``None`` drops the key); unknown keys raise ValueError naming them."""
        narrowing = dict(narrowing or {})
        unknown = sorted(set(narrowing) - set(self.keys))
        if unknown:
            raise ValueError(
                f"search space: unknown key(s) {', '.join(unknown)}; the searchable keys are {', '.join(self.keys)}"
            )
        specs = []
        for spec in self.specs:
            if spec.key not in narrowing:
                specs.append(spec)
            elif narrowing[spec.key] is not None:
                if not isinstance(narrowing[spec.key], Mapping):
                    raise ValueError(
                        f"search space key {spec.key!r}: expected a mapping or null, got {narrowing[spec.key]!r}"
                    )
                specs.append(spec.narrowed(narrowing[spec.key]))
        return SearchSpace(tuple(specs))

    def sample(self, trial, base: RunConfig) -> dict[str, Any]:
        """``{dotted key: value}`` for one trial; keys whose ``when`` does not match ``base`` are skipped."""
        flat = flatten(to_dict(base))
        overrides = {s.key: s.suggest(trial) for s in self.specs if s.applies_to(flat)}
        if "model.channels" in overrides and flat.get("model.name") != "yolo3d":
            overrides["model.strides"] = [2] * (len(overrides["model.channels"]) - 1)
        return overrides

    def describe(self) -> dict[str, dict[str, Any]]:
        """The space as plain data (for logs, MLflow and the study's user attributes)."""
        described = {}
        for spec in self.specs:
            fields = asdict(spec)
            del fields["key"]
            described[spec.key] = {k: v for k, v in fields.items() if v is not None and v != () and v is not False}
        return described


def default_space() -> SearchSpace:
    """``SEARCH_SPACE`` as a ``SearchSpace``."""
    return SearchSpace(tuple(ParamSpec.from_mapping(k, v) for k, v in SEARCH_SPACE.items()))


def load_space(path: str | Path | None = None, narrowing: Mapping[str, Any] | None = None) -> SearchSpace:
    """The default space narrowed by a YAML/JSON file and then by ``narrowing``."""
    space = default_space()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"search space file {path} does not exist")
        try:
            import yaml

            values = yaml.safe_load(path.read_text()) or {}  # YAML reads JSON too
        except Exception as error:
            raise ValueError(f"search space file {path} cannot be parsed: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"search space file {path} must hold a mapping of config keys")
        try:
            space = space.narrowed(values)
        except ValueError as error:
            raise ValueError(f"search space file {path}: {error}") from error
    return space.narrowed(narrowing)
