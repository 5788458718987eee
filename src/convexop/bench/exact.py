"""Benchmark cases on the exact families: toy-box (against CVXPY), elliptic-pde (against FISTA and a
cold-start polish) and the log-complexity study (error against depth)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..evaluation import plots
from ..families import get_family
from .cases import Row, case, describe_setting, mse_on_law, row, train_case_model


@case("toy-box")
def toy_box(out: Path, quick: bool) -> list[Row]:
    """The authors' min_op toy: in-distribution and the paper's out-of-distribution test, against the
    true box minimiser, plus throughput against CVXPY and our batched FISTA."""
    settings = {"steps": 300 if quick else 3000}
    model, metrics, seconds = train_case_model(out / "toy-box", "toy-box", "geo", settings)
    s = describe_setting(settings)
    ood = mse_on_law(model, "ood", 200 if quick else 2000, seed=99)
    rows = [row("toy-box", "test squared error (d * MSE) in distribution", 2 * metrics["test"]["mse"]["mean"],
                setting=s),
            row("toy-box", "test squared error (d * MSE) out of distribution", 2 * float(ood.mean()),
                "< 0.70 (authors' code, measured)", 2 * float(ood.mean()) < 0.70, s),
            row("toy-box", "parameters", metrics["parameters"], setting=s),
            row("toy-box", "training seconds", seconds, setting=s)]
    rows += _throughput_rows(model, 1000 if quick else 10000)
    return rows


def _throughput_rows(model, n: int) -> list[Row]:
    """Instances per second: the GEO's batched forward on n instances against CVXPY one by one."""
    family = model.family
    theta = torch.as_tensor(family.sample(n, np.random.default_rng(5)))
    model.eval()
    model.set_inference(start="zero")
    with torch.no_grad():
        model.coefficients(theta)  # warm-up
        started, repeats = time.perf_counter(), 5
        for _ in range(repeats):
            model.coefficients(theta)
        geo_rate = repeats * n / (time.perf_counter() - started)
    rows = [row("toy-box", "GEO instances per second (batched forward)", geo_rate, setting=f"batch {n}, 1 thread")]
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        return rows
    count = 20
    started = time.perf_counter()
    for params in theta[:count]:
        _cvxpy_toy(family.split_theta(params[None]))
    cvx_rate = count / (time.perf_counter() - started)
    s = f"{count} instances, problem built and compiled per instance (case throughput: compiled once)"
    rows.append(row("toy-box", "CVXPY (Clarabel) instances per second", cvx_rate, setting=s))
    rows.append(row("toy-box", "GEO / CVXPY throughput", geo_rate / cvx_rate, ">= 100", geo_rate / cvx_rate >= 100, s))
    return rows


def _cvxpy_toy(parts: dict[str, torch.Tensor]) -> np.ndarray:
    import cvxpy as cp

    a = parts["A"][0].numpy()
    b, c = parts["b"][0].numpy(), float(parts["c"][0])
    beta, kappa = parts["beta"][0].numpy(), float(parts["kappa"][0])
    x = cp.Variable(2)
    a = (a + a.T) / 2
    objective = 0.5 * cp.quad_form(x, cp.psd_wrap(a)) + b @ x + c + cp.log_sum_exp(
        cp.hstack([beta[0] * x[0], beta[1] * x[1], np.log(kappa) * np.ones(1)]))
    problem = cp.Problem(cp.Minimize(objective), [x >= -1, x <= 1])
    problem.solve(solver=cp.CLARABEL)
    return np.asarray(x.value)


@case("elliptic-pde")
def elliptic(out: Path, quick: bool) -> list[Row]:
    """Exact elliptic-pde: GEO against the finite-difference reference and the in-basis optimum,
    polishing against a cold start, and the GEO's forward against FISTA run to the GEO's accuracy."""
    from ..serving.polish import compare_with_cold_start
    from ..solvers.fista import fista

    settings = {"steps": 100 if quick else 1000}
    model, metrics, seconds = train_case_model(out / "elliptic-pde", "elliptic-pde", "geo", settings)
    s = describe_setting(settings)
    family = model.family
    n = 50 if quick else 1000
    theta = torch.as_tensor(family.sample(n, np.random.default_rng(11)))
    optimum = torch.as_tensor(family.in_basis_optimum(theta.numpy()))
    model.eval()
    model.set_inference(start="zero")
    with torch.no_grad():
        model.coefficients(theta.float())  # warm-up
        started = time.perf_counter()
        answer = model.coefficients(theta.float()).double()
        geo_seconds = time.perf_counter() - started
        target = family.decode(optimum)
        geo_error = ((family.decode(answer) - target) ** 2).mean(-1)
    tol = float(geo_error.median())
    started = time.perf_counter()
    result = fista(family.program(theta), torch.zeros_like(optimum), tol, 100000,
                   measure=lambda z, index: ((family.decode(z) - target[index]) ** 2).mean(-1))
    fista_seconds = time.perf_counter() - started
    comparison = compare_with_cold_start(family, answer, theta, 1e-6)
    rows = [row("elliptic-pde", "test MSE vs finite-difference reference", metrics["test"]["mse"]["mean"], setting=s),
            row("elliptic-pde", "test relative L2", metrics["test"]["relative_l2"]["mean"], setting=s),
            row("elliptic-pde", "in-basis floor (best approximation MSE)", metrics["test"]["best_approximation_mse"],
                setting=s),
            row("elliptic-pde", "MSE vs in-basis optimum (median)", tol, setting=f"{n} instances"),
            row("elliptic-pde", "parameters", metrics["parameters"], setting=s),
            row("elliptic-pde", "training seconds", seconds, setting=s),
            row("elliptic-pde", "GEO forward seconds", geo_seconds, setting=f"{n} instances, 1 batch"),
            row("elliptic-pde", "FISTA seconds to the GEO's median accuracy", fista_seconds,
                setting=f"{n} instances, zero start, mean {float(result.iterations.double().mean()):.1f} iterations"),
            row("elliptic-pde", "FISTA / GEO time at equal accuracy", fista_seconds / geo_seconds, "> 1",
                fista_seconds > geo_seconds),
            row("elliptic-pde", "polish to residual 1e-6: cold FISTA / warm Newton iterations",
                comparison["ratio_vs_cold_fista"], ">= 5", comparison["ratio_vs_cold_fista"] >= 5,
                f"warm Newton {comparison['warm_mean']:.2f} rounds, cold FISTA {comparison['cold_fista_mean']:.1f} "
                f"steps, cold Newton {comparison['cold_mean']:.2f} rounds")]
    return rows


def log_linear_fit(sizes: list[int], errors: list[float]) -> tuple[float, float]:
    """Least-squares fit log(error) = a + slope * size; returns (slope, R^2)."""
    x, y = np.asarray(sizes, float), np.log(np.asarray(errors, float))
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean()) ** 2).sum()
    return float(slope), float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan")


@case("log-complexity")
def log_complexity(out: Path, quick: bool) -> list[Row]:
    """The paper's O(log 1/eps) depth claim on elliptic-pde: error against the in-basis optimum as
    depth L grows (M = 20, R = 8, same budget), with a log-linear fit; the plot goes to the bench folder."""
    depths = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 12, 16]
    steps = 100 if quick else 600
    family = get_family("elliptic-pde")
    theta = torch.as_tensor(family.sample(200, np.random.default_rng(13)))
    optimum = family.decode(torch.as_tensor(family.in_basis_optimum(theta.numpy())))
    errors = []
    for depth in depths:
        settings = {"depth": depth, "steps": steps}
        model, _, _ = train_case_model(out / f"log-complexity-L{depth}", "elliptic-pde", "geo", settings)
        model.eval()
        model.set_inference(start="zero")
        with torch.no_grad():
            predicted = model.family.decode(model.coefficients(theta.float()).double())
        errors.append(float(((predicted - optimum) ** 2).mean()))
    slope, r2 = log_linear_fit(depths, errors)
    plots.error_against_size(depths, errors, "depth L", out / "log_complexity_depth.png", slope, r2)
    s = f"elliptic-pde, M=20, R=8, {steps} steps each, 200 instances"
    rows = [row("log-complexity", f"MSE vs in-basis optimum at L={d}", e, setting=s) for d, e in zip(depths, errors)]
    rows += [row("log-complexity", "slope of log(MSE) per layer", slope, "< 0 (error falls geometrically)",
                 slope < 0, s),
             row("log-complexity", "R^2 of the log-linear fit", r2, setting=s)]
    return rows
