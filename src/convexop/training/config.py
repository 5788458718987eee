"""Typed run configuration: family keys, model keys and training keys, with `--set key=value`.

Every key is typed by its default; unknown keys and bad values raise InputError naming the key
and the allowed domain (or the list of valid keys).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..families import Family
from ..models.base import OperatorModel, build_model  # noqa: F401  (registration)

SCHEDULES = ("constant", "cosine", "step")
LOSSES = ("mse", "relative", "objective")
MAX_SEED = 2**32 - 1  # numpy's legacy seed range, used by the trainer
MAX_STEPS = 10_000_000  # an upper bound on training steps (checkpoints are checked against it too)


@dataclass
class TrainingConfig:
    steps: int = 2000
    batch_size: int = 400
    lr: float = 1e-3
    grad_clip: float = 0.0
    loss: str = "mse"
    loss_offset: float = 0.0
    schedule: str = "cosine"
    seed: int = 0
    device: str = "cpu"
    eval_every: int = 100
    checkpoint_every: int = 500
    n_instances: int = 500
    test_fraction: float = 0.2
    data_seed: int = 0
    test_law: str = "train"
    tensorboard: bool = True
    max_rollbacks: int = 3
    label_noise: float = 0.0  # Gaussian noise on the training targets, in units of their RMS (a study)

    def validate(self) -> None:
        _need(1 <= self.steps <= MAX_STEPS, "steps", self.steps, f"integers in [1, {MAX_STEPS}]")
        _need(self.batch_size >= 1, "batch_size", self.batch_size, "integers >= 1")
        _need(0 < self.lr < 10 and math.isfinite(self.lr), "lr", self.lr, "(0, 10)")
        _need(self.grad_clip >= 0, "grad_clip", self.grad_clip, "[0, inf) (0 switches clipping off)")
        _need(self.loss in LOSSES, "loss", self.loss, "one of " + ", ".join(LOSSES))
        _need(self.loss_offset >= 0 and math.isfinite(self.loss_offset), "loss_offset", self.loss_offset, "[0, inf)")
        _need(self.schedule in SCHEDULES, "schedule", self.schedule, "one of " + ", ".join(SCHEDULES))
        _need(self.device == "cpu" or self.device.startswith("cuda"), "device", self.device, "cpu, cuda, cuda:N")
        _need(self.eval_every >= 1, "eval_every", self.eval_every, "integers >= 1")
        _need(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "integers >= 1")
        _need(self.n_instances >= 2, "n_instances", self.n_instances, "integers >= 2")
        _need(0 < self.test_fraction < 1, "test_fraction", self.test_fraction, "(0, 1)")
        _need(0 <= self.seed <= MAX_SEED, "seed", self.seed, f"integers in [0, {MAX_SEED}]")
        _need(0 <= self.data_seed < MAX_SEED, "data_seed", self.data_seed, f"integers in [0, {MAX_SEED - 1}]")
        _need(0 <= self.max_rollbacks <= 100, "max_rollbacks", self.max_rollbacks, "integers in [0, 100]")
        _need(0 <= self.label_noise <= 10 and math.isfinite(self.label_noise), "label_noise", self.label_noise,
              "[0, 10] (standard deviation in units of the targets' RMS)")
        n_test = max(1, round(self.n_instances * self.test_fraction))  # as prepare_data splits
        _need(n_test < self.n_instances, "test_fraction", self.test_fraction,
              f"(0, 1) leaving at least one of n_instances = {self.n_instances} for training")
        _need(self.n_instances <= 100_000_000, "n_instances", self.n_instances, "integers in [2, 100000000]")


@dataclass
class RunConfig:
    family: str
    model: str
    family_config: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "model": self.model, "family_config": self.family_config,
                "model_kwargs": self.model_kwargs, "training": dataclasses.asdict(self.training)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        return cls(data["family"], data["model"], dict(data["family_config"]),
                   dict(data["model_kwargs"]), TrainingConfig(**data["training"]))


def _keyword_defaults(function) -> dict[str, Any]:
    out = {}
    for name, p in inspect.signature(function).parameters.items():
        if name in ("self", "family") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[name] = p.default
    return out


def parse_value(key: str, text: str, like: Any) -> Any:
    """Parse `text` to the type of `like` (bool, int, float, str; None means float)."""
    try:
        if isinstance(like, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float) or like is None:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        return text
    except ValueError:
        kind = "true/false" if isinstance(like, bool) else type(like).__name__ if like is not None else "float"
        kind = {"int": "an integer", "float": "a finite float", "str": "a string"}.get(kind, f"a {kind}")
        raise InputError(key, text, kind) from None


# A weight-tied GEO layer iterated to its fixed point trains stably with these (README, "Equilibrium
# mode"): a contractive A, the phantom gradient, a short high-lr schedule, clipped gradients.
EQUILIBRIUM_DEFAULTS = {"model": {"depth": 30, "width": 16, "init": "scaled", "contraction": 0.9,
                                  "backward": "phantom"},
                        "training": {"steps": 2000, "lr": 3e-3, "grad_clip": 1.0}}


def default_model(family_cls: type[Family] | Family) -> str:
    """The model `train` builds when none is named: the family's `default_model` (qp-dc3 and qp-dc3-1000:
    geo-gradient, which measured better there), else the GEO."""
    return family_cls.default_training().get("default_model", "geo")


def resolve_config(family_cls: type[Family] | Family, model: str, overrides: dict[str, str]) -> RunConfig:
    """Family defaults, then the family's default training settings, then (for a GEO in equilibrium
    mode) EQUILIBRIUM_DEFAULTS, then `--set` overrides.
    `family_cls` is a registered family class, or a family object built by user code (from_torch,
    from_cvxpy), whose only family keys are the recorded ones (a family file's sha256)."""
    if model not in OperatorModel.registry:
        raise InputError("--model", model, "one of " + ", ".join(sorted(OperatorModel.registry)))
    user_family = isinstance(family_cls, Family)
    family_keys = {} if user_family else _keyword_defaults(family_cls.__init__)
    model_keys = _keyword_defaults(OperatorModel.registry[model].__init__)
    training_keys = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
    defaults = family_cls.default_training()
    family_config = family_cls.family_config() if user_family else dict(family_keys) | defaults.get("family", {})
    model_kwargs = dict(model_keys) | (defaults.get("model", {}) if model == "geo" else defaults.get(model, {}))
    training = dict(training_keys) | defaults.get("training", {}) | defaults.get(f"training_{model}", {})
    mode = overrides.get("mode", model_kwargs.get("mode")) if model == "geo" else None
    if mode == "equilibrium" and model_kwargs.get("mode") != "equilibrium":  # the family's defaults are unrolled
        model_kwargs |= EQUILIBRIUM_DEFAULTS["model"]
        training |= EQUILIBRIUM_DEFAULTS["training"]
    for key, text in overrides.items():
        if key in family_keys:
            family_config[key] = parse_value(key, text, family_keys[key])
        elif key in model_keys:
            model_kwargs[key] = parse_value(key, text, model_keys[key])
        elif key in training_keys:
            training[key] = parse_value(key, text, training_keys[key])
        else:
            valid = sorted(set(family_keys) | set(model_keys) | set(training_keys))
            raise InputError("--set " + key, None, "", "unknown key; valid keys: " + ", ".join(valid))
    config = RunConfig(family_cls.name, model, family_config, model_kwargs, TrainingConfig(**training))
    config.training.validate()
    return config


def _need(ok: bool, key: str, value: Any, domain: str) -> None:
    if not ok:
        raise InputError(key, value, domain)


def check_loaded(config: RunConfig, where: str) -> RunConfig:
    """Validate a configuration read from a file (config.json): every training key of the type of
    its default (an int where a float is expected is accepted) and within its domain."""
    for f in dataclasses.fields(TrainingConfig):
        value, default = getattr(config.training, f.name), f.default
        expected = float if isinstance(default, float) and not isinstance(default, bool) else type(default)
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
            setattr(config.training, f.name, value)
        if expected is float and ok and not math.isfinite(value):
            ok = False
        kind = {"int": "an integer", "float": "a finite float", "bool": "true or false", "str": "a string"}
        _need(ok, f"{where}: training.{f.name}", value, kind.get(expected.__name__, expected.__name__))
    for name, value in (("family", config.family), ("model", config.model)):
        _need(isinstance(value, str), f"{where}: {name}", value, "a name")
    if config.model not in OperatorModel.registry:
        raise InputError(f"{where}: model", config.model, "one of " + ", ".join(sorted(OperatorModel.registry)))
    try:
        config.training.validate()
    except InputError as error:
        raise InputError(f"{where}: training.{error.field}", error.value, error.domain) from None
    return config


def describe_config(config: RunConfig) -> list[str]:
    """The lines of `train FAMILY --show-config`: every --set key with its resolved value and type."""
    record = config.to_json()
    lines = [f"train {config.model} on {config.family}: every --set KEY=VALUE, with its value now"]
    for section, title in (("family_config", "family"), ("model_kwargs", "model"), ("training", "training")):
        values = record[section]
        lines.append(f"  {title}:" + ("" if values else " (none)"))
        for key, value in values.items():
            kind = "" if value is None else f"  ({type(value).__name__})"
            lines.append(f"    {key} = {json.dumps(value)}{kind}")
    return lines
