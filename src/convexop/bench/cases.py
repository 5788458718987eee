"""The case registry of `convexop bench` and the helpers every case shares.

A case is a function (out folder, quick) -> rows, registered under its name with `@case(name)`. It
trains through `train_case_model` (the same `train_run` as the CLI), scores against references and
returns rows {case, metric, value, target, met, setting} built with `row`; `runner.run_bench` runs
the cases and writes the report. The modules that define cases are imported in one place,
`runner.load_cases`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import generate
from ..evaluation.metrics import evaluate_model
from ..families import FAMILIES, get_family
from ..models.base import from_checkpoint
from ..training.config import resolve_config
from ..training.run import train_run

Row = dict[str, Any]
CASES: dict[str, Callable[[Path, bool], list[Row]]] = {}


def case(name: str):
    """Register the decorated function as the bench case `name`."""
    def register(function):
        CASES[name] = function
        return function
    return register


def row(case_name: str, metric: str, value: float, target: str | None = None,
        met: bool | None = None, setting: str = "") -> Row:
    return {"case": case_name, "metric": metric, "value": value, "target": target, "met": met,
            "setting": setting}


def train_case_model(run_dir: Path, family: str, model: str, settings: dict[str, Any]) -> tuple[Any, dict, float]:
    """Train a run from `settings` (the `--set` keys), return (model, metrics, seconds)."""
    get_family(family)  # validates the name and registers every family
    family_cls = FAMILIES[family]
    config = resolve_config(family_cls, model, {k: str(v) for k, v in settings.items()})
    config.training.tensorboard = False
    started = time.perf_counter()
    train_run(config, run_dir)
    seconds = time.perf_counter() - started
    fam = get_family(config.family, **config.family_config)
    trained = from_checkpoint(run_dir, family=fam)
    metrics = evaluate_model(trained, run_dir)
    return trained, metrics, seconds


def describe_setting(settings: dict[str, Any]) -> str:
    """The `setting` column of a row: 'key=value, ...'."""
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def mse_on_law(model, law: str, n: int, seed: int) -> np.ndarray:
    """Per-instance MSE of `model` (zero start) on n fresh instances of `law`."""
    family = model.family
    data = generate(family, n, seed, law=law)
    model.eval()
    model.set_inference(start="zero")
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        predicted = model.values(torch.as_tensor(data.params, dtype=dtype))
        return family.error(predicted, torch.as_tensor(data.targets, dtype=dtype)).numpy()
