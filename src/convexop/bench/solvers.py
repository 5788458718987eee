"""Shared pieces of the solver benchmarks on the exact families (toy-box, elliptic-pde, hedging):
the trained GEO of each family (trained once per bench run), the in-basis program, polishing,
timed GEO forwards, CVXPY (Clarabel) formulations, and the time-to-accuracy case.

Accuracy is always the family's certificate (the prox-gradient residual of the in-basis program,
solvers/program.py: its measure), so the GEO, our batched FISTA and CVXPY are scored by the same number.

CVXPY formulations are the families' own (`Family.cvxpy_form`: toy-box, elliptic-pde, hedging), DPP
problems compiled once with parameters, then re-solved per instance; the wall time per instance
includes setting the parameters and CVXPY's own overhead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..families import Family
from ..serving.polish import polish_answers
from ..solvers.program import SolveResult
from .cases import Row, case, describe_setting, row, train_case_model

EXACT = ("toy-box", "elliptic-pde", "hedging")
# toy-box: the forward-backward start (step 0.2 ~ 1 / typical Lipschitz constant) trains 20x better
# than the default random one in a short budget (test MSE 0.012-0.02 against 0.34 after 300 steps),
# and L = 10, M = 8 is as accurate after 600 steps as the default L = 20, M = 20 at 1/4 of the FLOPs
GEO_SETTINGS = {"toy-box": {"depth": 10, "width": 8, "init": "forward-backward", "step": 0.2},
                "elliptic-pde": {}, "hedging": {}}
QUICK_STEPS = {"toy-box": 600, "elliptic-pde": 500, "hedging": 500}
POLISH_BUDGET = 10_000
_TRAINED: dict[tuple, tuple[Any, dict]] = {}


def solver_geo(out: Path, name: str, quick: bool):
    """The GEO of an exact family (family defaults plus GEO_SETTINGS; QUICK_STEPS under quick),
    trained once per process and output folder; returns (model in eval mode, zero start; settings)."""
    key = (str(Path(out).resolve()), name, quick)
    if key not in _TRAINED:
        settings = dict(GEO_SETTINGS[name])
        if quick:
            settings["steps"] = QUICK_STEPS[name]
        model, _, _ = train_case_model(Path(out) / f"solver-geo-{name}", name, "geo", settings)
        model.eval()
        model.set_inference(start="zero")
        _TRAINED[key] = (model, settings)
    return _TRAINED[key]


def describe(name: str, settings: dict) -> str:
    return f"{name} GEO (family defaults{', ' + describe_setting(settings) if settings else ''})"


def instances(family: Family, n: int, seed: int) -> torch.Tensor:
    """(n, P) float64 instances from the family's training law."""
    return torch.as_tensor(family.sample(n, np.random.default_rng(seed)), dtype=torch.float64)


def solve_to(family: Family, start: torch.Tensor, theta: torch.Tensor, tol: float,
             max_iterations: int = POLISH_BUDGET) -> SolveResult:
    """Batched FISTA from `start` until each instance's certificate measure is <= tol (FISTA also where
    the family polishes by Newton, so that warm and cold iterations count the same steps)."""
    return polish_answers(family, start.detach().double(), theta.double(), tol, max_iterations, method="fista")


def timed(function: Callable[[], Any], min_seconds: float = 0.2, repeats: int = 3) -> tuple[Any, float]:
    """(result, seconds per call): calls in blocks of at least min_seconds, best of `repeats` blocks."""
    result = function()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while True:
            result = function()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return result, best


def geo_forward(model, theta: torch.Tensor) -> torch.Tensor:
    """The GEO's float32 batched forward (zero start), returned as float64 coefficients."""
    with torch.no_grad():
        return model.coefficients(theta.float()).double()


# ----- CVXPY ---------------------------------------------------------------------------------
def cvxpy_available() -> bool:
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        return False
    return True


def cvxpy_problem(family: Family):
    """(problem, variable, set_parameters(theta_row)) of the family's in-basis program as a DPP CVXPY
    problem: the family's declared `cvxpy_form`; a ValueError where it declares none."""
    form = family.cvxpy_form()
    if form is None:
        raise ValueError(f"{family.name} declares no CVXPY formulation (Family.cvxpy_form) to compare against")
    return form


def clarabel_settings(accuracy: float | None) -> dict[str, float]:
    """Clarabel tolerances (gap absolute/relative, feasibility) = accuracy, or its defaults (1e-8)."""
    if accuracy is None:
        return {}
    return {"tol_gap_abs": accuracy, "tol_gap_rel": accuracy, "tol_feas": accuracy}


def cvxpy_solve(family: Family, theta: torch.Tensor, accuracy: float | None = None,
                rebuild: bool = False) -> dict[str, Any]:
    """Solve each instance with CVXPY + Clarabel, one by one: answers (n, R) float64, the mean wall
    seconds per instance (after one untimed warm-up solve) and Clarabel's own mean solve seconds.
    rebuild=True builds and compiles the problem anew for every instance (no parameter reuse)."""
    import cvxpy as cp

    settings = clarabel_settings(accuracy)
    problem, x, set_parameters = cvxpy_problem(family)
    set_parameters(theta[0])
    problem.solve(solver=cp.CLARABEL, **settings)  # warm-up: compiles the parameterised problem
    answers, walls, solver_seconds = [], [], []
    for theta_row in theta:
        started = time.perf_counter()
        if rebuild:
            problem, x, set_parameters = cvxpy_problem(family)
        set_parameters(theta_row)
        problem.solve(solver=cp.CLARABEL, **settings)
        walls.append(time.perf_counter() - started)
        solver_seconds.append(problem.solver_stats.solve_time or 0.0)
        answers.append(np.asarray(x.value, dtype=np.float64))
    return {"x": torch.as_tensor(np.stack(answers)), "seconds": float(np.mean(walls)),
            "solver_seconds": float(np.mean(solver_seconds)), "n": len(theta)}


# ----- time to accuracy ----------------------------------------------------------------------
TOLERANCES = (1e-3, 1e-6)
CURVE = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)


def time_to_accuracy_family(model, theta: torch.Tensor, tolerances, n_cvxpy: int,
                            cvxpy_at=TOLERANCES) -> dict[str, Any]:
    """Per tolerance: GEO forward + warm polish against cold FISTA from zero (all of theta, one
    batch); at the tolerances `cvxpy_at` also CVXPY (the first n_cvxpy instances, one by one,
    Clarabel tolerances tol / 100)."""
    family = model.family
    answer, forward_seconds = timed(lambda: geo_forward(model, theta), min_seconds=0.0, repeats=3)
    start_residual = family.certificate(answer, theta).measure
    out = {"n": len(theta), "forward_seconds": forward_seconds,
           "start_residual_median": float(start_residual.median()), "tolerances": {}}
    for tol in tolerances:
        started = time.perf_counter()
        warm = solve_to(family, answer, theta, tol)
        warm_seconds = time.perf_counter() - started
        started = time.perf_counter()
        cold = solve_to(family, torch.zeros_like(answer), theta, tol)
        cold_seconds = time.perf_counter() - started
        entry = {"warm_seconds": forward_seconds + warm_seconds, "polish_seconds": warm_seconds,
                 "cold_seconds": cold_seconds,
                 "warm_iterations": float(warm.iterations.double().mean()),
                 "cold_iterations": float(cold.iterations.double().mean()),
                 "warm_converged": float(warm.converged.double().mean()),
                 "cold_converged": float(cold.converged.double().mean()),
                 "warm_max_residual": float(warm.residual.max()),
                 "cold_max_residual": float(cold.residual.max())}
        if family.newton_polish:  # the family's default polish: active-set Newton
            started = time.perf_counter()
            newton = polish_answers(family, answer, theta, tol, POLISH_BUDGET)
            entry |= {"newton_seconds": forward_seconds + time.perf_counter() - started,
                      "newton_iterations": float(newton.iterations.double().mean()),
                      "newton_converged": float(newton.converged.double().mean())}
        if n_cvxpy and tol in cvxpy_at and cvxpy_available():
            cvx = cvxpy_solve(family, theta[:n_cvxpy], accuracy=tol / 100)
            reached = family.certificate(cvx["x"], theta[:n_cvxpy]).certified(tol)
            entry |= {"cvxpy_seconds": cvx["seconds"], "cvxpy_solver_seconds": cvx["solver_seconds"],
                      "cvxpy_reached": float(reached.double().mean()), "cvxpy_n": n_cvxpy}
        out["tolerances"][tol] = entry
    return out


@case("time-to-accuracy")
def time_to_accuracy(out: Path, quick: bool) -> list[Row]:
    """Certificate <= 1e-3 and <= 1e-6 on the exact families: GEO forward + warm polish against cold
    batched FISTA (same instances, one batch) and CVXPY/Clarabel one instance at a time (hedging: its
    in-basis QP ||Q^(1/2) (x - x_u)||^2, 0 <= x_0 <= 10; it declares no `program`, so the bench
    polishes that QP with the same FISTA, stopped on the family's certificate).

    Accuracy is the family's certificate; Clarabel runs with its tolerances at tol / 100 and the
    fraction of its answers that reach tol is reported. Mean iterations per instance are in the settings."""
    from . import plots  # matplotlib only when a case draws

    n, n_cvxpy = (256, 50) if quick else (1000, 200)
    rows, curves = [], {}
    for name in EXACT:
        model, settings = solver_geo(out, name, quick)
        theta = instances(model.family, n, 21)
        result = time_to_accuracy_family(model, theta, CURVE, n_cvxpy)
        curves[name] = result
        s = f"{describe(name, settings)}; {n} instances, one batch; CVXPY on the first {n_cvxpy}"
        c = f"{name}"
        rows.append(row("time-to-accuracy", f"{c}: GEO answer residual (median)", result["start_residual_median"],
                        setting=s))
        for tol in TOLERANCES:
            e = result["tolerances"][tol]
            # no warm iteration at all: every GEO answer already meets tol (the ratio is infinite)
            ratio = e["cold_iterations"] / e["warm_iterations"] if e["warm_iterations"] > 0 else math.inf
            newton = "newton_iterations" in e  # then the default polish is Newton and the target is its
            if newton:
                newton_ratio = e["cold_iterations"] / e["newton_iterations"] if e["newton_iterations"] > 0 else math.inf
                rows += [row("time-to-accuracy", f"{c} @{tol:g}: GEO + Newton polish ms per instance",
                             1e3 * e["newton_seconds"] / n,
                             setting=f"{e['newton_iterations']:.2f} Newton rounds mean, "
                                     f"{100 * e['newton_converged']:.0f}% reached"),
                         row("time-to-accuracy", f"{c} @{tol:g}: cold FISTA / warm Newton iterations", newton_ratio,
                             ">= 5" if tol == 1e-6 else None, newton_ratio >= 5 if tol == 1e-6 else None, s)]
            rows += [
                row("time-to-accuracy", f"{c} @{tol:g}: GEO + polish ms per instance", 1e3 * e["warm_seconds"] / n,
                    setting=f"forward {1e3 * result['forward_seconds'] / n:.4f} ms, {e['warm_iterations']:.1f} "
                            f"iterations mean, {100 * e['warm_converged']:.0f}% reached"),
                row("time-to-accuracy", f"{c} @{tol:g}: cold FISTA ms per instance", 1e3 * e["cold_seconds"] / n,
                    setting=f"{e['cold_iterations']:.1f} iterations mean, {100 * e['cold_converged']:.0f}% reached"),
                row("time-to-accuracy", f"{c} @{tol:g}: cold / warm FISTA iterations", ratio,
                    ">= 5" if tol == 1e-6 and not newton else None,
                    ratio >= 5 if tol == 1e-6 and not newton else None, s),
                row("time-to-accuracy", f"{c} @{tol:g}: cold FISTA / (GEO + polish) time",
                    e["cold_seconds"] / e["warm_seconds"], setting=s)]
            if "cvxpy_seconds" in e:
                rows += [row("time-to-accuracy", f"{c} @{tol:g}: CVXPY (Clarabel) ms per instance",
                             1e3 * e["cvxpy_seconds"],
                             setting=f"Clarabel tolerances {tol / 100:g}, solver alone "
                                     f"{1e3 * e['cvxpy_solver_seconds']:.3f} ms, {100 * e['cvxpy_reached']:.0f}% "
                                     f"reached the residual"),
                         row("time-to-accuracy", f"{c} @{tol:g}: CVXPY / (GEO + polish) time per instance",
                             e["cvxpy_seconds"] * n / e["warm_seconds"], setting=s)]
    plots.time_to_accuracy(curves, out / "time_to_accuracy.png")
    return rows
