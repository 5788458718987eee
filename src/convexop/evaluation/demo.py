"""The main job: train the default GEO on heat-pde, evaluate it, write plots, return a table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..data import read_dataset
from ..families import HeatPDE, get_family
from ..models.base import from_checkpoint
from ..training.config import resolve_config
from ..training.run import train_run
from . import plots
from .metrics import best_approximation_mse, evaluate_model

DEFAULT_FAMILY = "heat-pde"


def run_demo(out: str | Path, overrides: dict[str, str] | None = None, callback=None) -> dict[str, Any]:
    """Train + evaluate + plot into `out`; returns the metrics with the plot paths."""
    run_dir = Path(out)
    config = resolve_config(HeatPDE, "geo", overrides or {})
    started = time.perf_counter()
    train_run(config, run_dir, callback=callback)
    seconds = time.perf_counter() - started
    family = get_family(config.family, **config.family_config)
    model = from_checkpoint(run_dir, family=family)
    metrics = evaluate_model(model, run_dir)
    metrics["wall_seconds"] = seconds
    test = read_dataset(run_dir / "test.h5", family)
    figures = run_dir / "plots"
    metrics["plots"] = [
        str(plots.loss_curves(run_dir, figures / "loss.png")),
        str(plots.test_instances(model, run_dir, figures / "test_instances.png")),
        str(plots.error_against_parameter(np.asarray(metrics["test"]["per_instance_mse"]), test.params[:, 0],
                                          "nu", best_approximation_mse(family, test.targets),
                                          figures / "error_vs_nu.png")),
    ]
    return metrics


def table_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for printing."""
    def fmt(x: float) -> str:
        return f"{x:.3e}"

    return [
        ("family", metrics["family"]),
        ("model", f"{metrics['model']} ({metrics['parameters']:,} parameters)"),
        ("train MSE (mean)", fmt(metrics["train"]["mse"]["mean"])),
        ("train relative L2 (mean)", f"{100 * metrics['train']['relative_l2']['mean']:.2f}%"),
        ("test MSE (mean)", fmt(metrics["test"]["mse"]["mean"])),
        ("test relative L2 (mean)", f"{100 * metrics['test']['relative_l2']['mean']:.2f}%"),
        ("test MSE floor of the basis", fmt(metrics["test"]["best_approximation_mse"])),
        ("training time", f"{metrics.get('training_seconds', float('nan')):.1f} s"),
    ]
