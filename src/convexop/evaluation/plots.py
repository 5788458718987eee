"""Figures of a run: loss curves, test instances against references, error against a parameter."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from ..data import read_dataset
from ..models.base import OperatorModel


def save_figure(figure, path: Path) -> Path:
    """Write `figure` to `path` atomically (a temporary file, then a rename) and close it: the one
    figure writer of the package."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(figure)
    tmp.replace(path)
    return path


def loss_curves(run_dir: Path, out: Path) -> Path:
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    step = [int(r["step"]) for r in rows]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.semilogy(step, [float(r["train_loss"]) for r in rows], label="train (running batch loss)")
    axis.semilogy(step, [float(r["test_mse"]) for r in rows], "o", ms=3, label="test MSE")
    axis.set_xlabel("step")
    axis.set_ylabel("MSE")
    axis.legend()
    axis.grid(alpha=0.3)
    return save_figure(figure, out)


def test_instances(model: OperatorModel, run_dir: Path, out: Path, count: int = 3) -> Path:
    """Prediction vs reference vs best in-basis approximation on `count` test instances (1-D families)."""
    family = model.family
    data = read_dataset(run_dir / "test.h5", family)
    order = np.argsort(data.params[:, 0])  # smallest, middle and largest first parameter
    pick = order[np.linspace(0, len(order) - 1, count).astype(int)]
    theta = torch.as_tensor(data.params[pick], dtype=torch.float32)
    model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        predicted = model.values(theta).double().numpy()
    targets = torch.as_tensor(data.targets[pick])
    best = family.decode(family.project(targets)).numpy()
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 3.4), squeeze=False)
    x = np.asarray(family.points)
    for axis, k in zip(axes[0], range(count)):
        label = ", ".join(f"{n}={v:.3g}" for n, v in family.instance_from_theta(data.params[pick[k]]).items()
                          if isinstance(v, float))
        axis.plot(x, data.targets[pick[k]], "k-", lw=2, label="reference")
        axis.plot(x, best[k], "g:", lw=1.5, label="best in basis")
        axis.plot(x, predicted[k], "r--", lw=1.5, label=model.model_name.upper())
        axis.set_title(label)
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    return save_figure(figure, out)


def error_against_parameter(per_instance_mse: np.ndarray, parameter: np.ndarray, name: str,
                            floor: np.ndarray, out: Path) -> Path:
    figure, axis = plt.subplots(figsize=(6, 4))
    order = np.argsort(parameter)
    axis.semilogy(parameter[order], per_instance_mse[order], "o", ms=3, label="model")
    axis.semilogy(parameter[order], floor[order], "-", label="best in-basis approximation")
    axis.set_xlabel(name)
    axis.set_ylabel("test MSE per instance")
    axis.legend()
    axis.grid(alpha=0.3)
    return save_figure(figure, out)


def error_against_iterations(iterations: list[int], mse: list[float], residual: list[float], out: Path,
                             unrolled_mse: float | None = None) -> Path:
    """Test-time compute of an equilibrium model: test MSE and fixed-point residual per budget."""
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.loglog(iterations, mse, "o-", label="test MSE")
    axis.loglog(iterations, residual, "s--", label="fixed-point residual (mean)")
    if unrolled_mse is not None:
        axis.axhline(unrolled_mse, color="k", lw=1, ls=":", label="unrolled GEO test MSE")
    axis.set_xlabel("inference iterations (Anderson)")
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    return save_figure(figure, out)


def error_against_size(sizes: list[int], errors: list[float], label: str, out: Path,
                       slope: float | None = None, r2: float | None = None) -> Path:
    """Error (log scale) against a model size with the log-linear fit, for the log-complexity study."""
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.semilogy(sizes, errors, "o-", label="GEO")
    if slope is not None:
        x = np.asarray(sizes, float)
        fit = np.exp(np.polyfit(x, np.log(errors), 1)[1] + slope * x)
        axis.semilogy(x, fit, "k:", label=f"log-linear fit: slope {slope:.3f}, R^2 {r2:.2f}")
    axis.set_xlabel(label)
    axis.set_ylabel("MSE vs in-basis optimum")
    axis.legend()
    axis.grid(alpha=0.3, which="both")
    return save_figure(figure, out)
