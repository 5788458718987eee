"""The log-complexity study beyond the depth sweep of `exact.log_complexity`: GEO error against
width M and rank R on elliptic-pde, and against depth L on toy-box, each with a log-linear fit
(log error = a + slope * size, `exact.log_linear_fit`) and a plot.

Every point is a GEO trained with the same budget (mini-batches of 100) and data (shared within a sweep where the family
configuration does not change), scored on fresh instances from the training law with a zero start:
MSE against the in-basis optimum (the program's exact answer in the basis) and, for elliptic-pde,
against the finite-difference solution of the equation (which also carries the basis error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import generate
from ..families import get_family
from .cases import Row, case, row, train_case_model
from .exact import log_linear_fit
from .sizes import BATCH, prepare_shared

FIT_R2 = 0.8  # a geometric fall needs the log-linear fit to explain most of the variation


def train_point(out: Path, family_name: str, settings: dict[str, Any], label: str):
    run_dir = out / "sweeps" / label
    prepare_shared(run_dir, family_name, "geo", settings)
    model, metrics, _ = train_case_model(run_dir, family_name, "geo", settings)
    model.eval()
    model.set_inference(start="zero")
    return model, metrics


def errors_of(model, theta: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float]:
    """MSE (mean over instances and points) against the in-basis optimum, and against `reference`
    values at the family's points when given; also the basis floor of the reference."""
    family = model.family
    with torch.no_grad():
        predicted = family.decode(model.coefficients(torch.as_tensor(theta, dtype=torch.float32)).double())
    optimum = family.decode(torch.as_tensor(family.in_basis_optimum(theta)))
    out = {"optimum": float(family.error(predicted, optimum).mean())}
    if reference is not None:
        target = torch.as_tensor(reference, dtype=torch.float64)
        out["reference"] = float(family.error(predicted, target).mean())
        out["floor"] = float(family.error(family.decode(family.project(target)), target).mean())
    return out


def fit_rows(name: str, size_label: str, sizes: list[int], errors: list[float], setting: str) -> list[Row]:
    slope, r2 = log_linear_fit(sizes, errors)
    geometric = slope < 0 and r2 >= FIT_R2
    return [row(name, f"slope of log(MSE) per unit of {size_label}", slope,
                f"< 0 with R^2 >= {FIT_R2} (error falls geometrically)", geometric, setting),
            row(name, f"R^2 of the log-linear fit in {size_label}", r2, setting=setting)]


def sweep_plot(sizes: list[int], series: dict[str, list[float]], fitted: str, xlabel: str, out: Path) -> Path:
    """Error curves (log scale) against a size, with the log-linear fit of the series `fitted`."""
    from ..evaluation.plots import plt, save_figure

    figure, axis = plt.subplots(figsize=(6, 4))
    for label, errors in series.items():
        axis.semilogy(sizes, errors, "o-" if label == fitted else "s--", label=label)
    x = np.asarray(sizes, float)
    slope, r2 = log_linear_fit(sizes, series[fitted])
    fit = np.exp(np.polyfit(x, np.log(series[fitted]), 1)[1] + slope * x)
    axis.semilogy(x, fit, "k:", label=f"log-linear fit ({fitted}): slope {slope:.3f}, R^2 {r2:.2f}")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("MSE")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, which="both")
    return save_figure(figure, out)


@case("log-complexity-width")
def width_sweep(out: Path, quick: bool) -> list[Row]:
    """elliptic-pde GEO error against width M (R = 8, L = 10, forward-backward init, which needs
    M >= 2R: M = 2R probes already give an exact central-difference gradient of this quadratic g)."""
    widths = [16, 20, 24, 32, 48] if quick else [16, 20, 24, 32, 48, 64]
    steps = 600 if quick else 2000
    family = get_family("elliptic-pde")
    data = generate(family, 200, seed=13)
    series: dict[str, list[float]] = {"vs in-basis optimum": [], "vs finite-difference reference": []}
    for width in widths:
        settings = {"width": width, "steps": steps, "batch_size": BATCH}
        model, _ = train_point(out, "elliptic-pde", settings, f"elliptic-M{width}")
        e = errors_of(model, data.params, data.targets)
        series["vs in-basis optimum"].append(e["optimum"])
        series["vs finite-difference reference"].append(e["reference"])
    sweep_plot(widths, series, "vs in-basis optimum", "width M", out / "log_complexity_width.png")
    s = f"elliptic-pde, R=8, L=10, {steps} steps of {BATCH} each, 200 new instances"
    rows = [row("log-complexity-width", f"MSE vs in-basis optimum at M={m}", e, setting=s)
            for m, e in zip(widths, series["vs in-basis optimum"])]
    rows += [row("log-complexity-width", f"MSE vs finite-difference reference at M={m}", e, setting=s)
             for m, e in zip(widths, series["vs finite-difference reference"])]
    return rows + fit_rows("log-complexity-width", "width M", widths, series["vs in-basis optimum"], s)


@case("log-complexity-rank")
def rank_sweep(out: Path, quick: bool) -> list[Row]:
    """elliptic-pde GEO error against rank R (Hermite functions, scale 1; L = 10, M = 32 so that every
    rank can start as forward-backward splitting), against the FD reference and the in-basis optimum."""
    ranks = [2, 4, 6, 8, 12] if quick else [2, 4, 6, 8, 12, 16]
    steps = 600 if quick else 2000
    data = generate(get_family("elliptic-pde"), 200, seed=13)
    series: dict[str, list[float]] = {"vs finite-difference reference": [], "vs in-basis optimum": [],
                                      "basis floor (best approximation)": []}
    for rank in ranks:
        settings = {"rank": rank, "width": 32, "steps": steps, "batch_size": BATCH}
        model, _ = train_point(out, "elliptic-pde", settings, f"elliptic-R{rank}")
        e = errors_of(model, data.params, data.targets)
        series["vs finite-difference reference"].append(e["reference"])
        series["vs in-basis optimum"].append(e["optimum"])
        series["basis floor (best approximation)"].append(e["floor"])
    sweep_plot(ranks, series, "vs finite-difference reference", "rank R", out / "log_complexity_rank.png")
    s = f"elliptic-pde, L=10, M=32, {steps} steps of {BATCH} each, 200 new instances"
    rows = []
    for label, key in (("reference", "vs finite-difference reference"), ("in-basis optimum", "vs in-basis optimum"),
                       ("basis floor", "basis floor (best approximation)")):
        rows += [row("log-complexity-rank", f"MSE {'' if label == 'basis floor' else 'vs '}{label} at R={r}", e,
                     setting=s) for r, e in zip(ranks, series[key])]
    return rows + fit_rows("log-complexity-rank", "rank R", ranks, series["vs finite-difference reference"], s)


@case("log-complexity-toy-box")
def toy_depth_sweep(out: Path, quick: bool) -> list[Row]:
    """toy-box GEO error (against the true box minimiser) against depth L (M = 8, forward-backward
    init with step 0.2)."""
    depths = [1, 2, 4, 8, 16] if quick else [1, 2, 4, 8, 16, 32]
    steps = 600 if quick else 3000
    family = get_family("toy-box")  # trained with its default batch (500 of 4,000 instances)
    theta = family.sample(500, np.random.default_rng(13))
    errors = []
    for depth in depths:
        settings = {"depth": depth, "width": 8, "init": "forward-backward", "step": 0.2, "steps": steps}
        model, _ = train_point(out, "toy-box", settings, f"toy-box-L{depth}")
        errors.append(errors_of(model, theta)["optimum"])
    sweep_plot(depths, {"vs true minimiser": errors}, "vs true minimiser", "depth L",
               out / "log_complexity_toy_box_depth.png")
    s = f"toy-box, M=8, init forward-backward (step 0.2), {steps} steps each, 500 new instances"
    rows = [row("log-complexity-toy-box", f"MSE vs true minimiser at L={d}", e, setting=s)
            for d, e in zip(depths, errors)]
    return rows + fit_rows("log-complexity-toy-box", "depth L", depths, errors, s)
