"""Shared pieces of the solver benchmarks on the exact families (toy-box, elliptic-pde, hedging):
the trained GEO of each family (trained once per bench run), the in-basis program, polishing,
timed GEO forwards, CVXPY (Clarabel) formulations, and the time-to-accuracy case.

Accuracy is always the family's certificate (the prox-gradient residual of the in-basis program,
certificates.py), so the GEO, our batched FISTA and CVXPY are scored by the same number.

CVXPY formulations (DPP: compiled once with parameters, then re-solved per instance; the wall time
per instance includes setting the parameters and CVXPY's own overhead):
- toy-box: 1/2 ||G x||^2 + b'x + log(exp(beta_1 x_1) + exp(beta_2 x_2) + kappa), |x_i| <= 1, G'G = A;
- elliptic-pde: sum_q w_q [pos(V x)_q^2 + (1 - xi) neg(V x)_q^2] / 2 + ||sqrt(nu/4) L x||^2 - b'x on the
  family's program grid (L'L = K, the stiffness);
- hedging: its in-basis QP in the compact form the family uses, ||Q^(1/2) (x - x_u)||^2 with
  x_u = A^+ H, 0 <= x_0 <= 10 (the 500-path least squares reduced through the pseudo-inverse).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..certificates import CompositeProgram
from ..families import Family
from ..prox import Box
from ..references.forward_backward import SolveResult, fista
from .bench_cases import Row, _setting, _train, case, row

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
        model, _, _ = _train(Path(out) / f"solver-geo-{name}", name, "geo", settings)
        model.eval()
        model.set_inference(start="zero")
        _TRAINED[key] = (model, settings)
    return _TRAINED[key]


def describe(name: str, settings: dict) -> str:
    return f"{name} GEO (family defaults{', ' + _setting(settings) if settings else ''})"


def instances(family: Family, n: int, seed: int) -> torch.Tensor:
    """(n, P) float64 instances from the family's training law."""
    return torch.as_tensor(family.sample(n, np.random.default_rng(seed)), dtype=torch.float64)


def hedging_program(family: Family, unconstrained: torch.Tensor, residual: torch.Tensor) -> CompositeProgram:
    """hedging's in-basis program (the family declares none yet): g = (x - x_u)' Q (x - x_u) + e with
    x_u = A^+ H and e (batch,) computed once per instance, the box 0 <= x_0 <= 10 and the Lipschitz
    bound 2 lambda_max(Q); its residual at t = 1 / L, divided by L, is `Hedging.certificate`."""
    quadratic = family.quadratic.to(unconstrained)

    def smooth(x: torch.Tensor) -> torch.Tensor:
        d = x - unconstrained
        return ((d @ quadratic) * d).sum(-1) + residual

    lower = torch.full((family.rank,), -float("inf"), dtype=torch.float64)
    upper = torch.full((family.rank,), float("inf"), dtype=torch.float64)
    lower[0], upper[0] = 0.0, 10.0  # capital x_0 in [0, 10]
    bound = torch.full((len(unconstrained),), float(family.lipschitz), dtype=torch.float64)
    return CompositeProgram(smooth, Box(lower, upper), bound)


def in_basis_program(family: Family, theta: torch.Tensor) -> CompositeProgram:
    """The family's in-basis program, or for hedging (which declares none) `hedging_program`."""
    program = family.program(theta)
    if program is not None:
        return program
    if family.name != "hedging":
        raise ValueError(f"{family.name} declares no in-basis program")
    return hedging_program(family, *family.unconstrained(theta.double()))


def solve_to(family: Family, start: torch.Tensor, theta: torch.Tensor, tol: float,
             max_iterations: int = POLISH_BUDGET) -> SolveResult:
    """Batched FISTA from `start` until each instance's certificate is <= tol: `polish(...,
    method="fista")` where the family declares its program (FISTA also where a family opts into its
    own Newton polish, so that warm and cold iterations count the same steps); for hedging the same
    solver on `hedging_program`, stopped on the family's certificate (computed from x_u once per
    instance instead of at every iteration)."""
    theta = theta.double()
    start = start.detach().double()
    if family.program(theta[:1]) is not None:
        from .polish import polish

        result = polish(family, start, theta, tol, max_iterations, method="fista")
        converged = torch.tensor([s == "polished" for s in result.status])
        return SolveResult(result.x, result.residual, result.iterations, converged)
    in_basis_program(family, theta[:1])  # refuses families other than hedging
    unconstrained, residual = family.unconstrained(theta)

    def build(index: torch.Tensor) -> CompositeProgram:
        return hedging_program(family, unconstrained[index], residual[index])

    return fista(build, start, tol, max_iterations,
                 measure=lambda z, index: build(index).residual(z) / float(family.lipschitz))


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
    """(problem, variable, set_parameters(theta_row)) of the family's in-basis program (DPP)."""
    import cvxpy as cp

    x = cp.Variable(family.rank)
    if family.name == "toy-box":
        g, b, beta, log_kappa = cp.Parameter((2, 2)), cp.Parameter(2), cp.Parameter(2), cp.Parameter(1)
        objective = 0.5 * cp.sum_squares(g @ x) + b @ x + cp.log_sum_exp(cp.hstack([cp.multiply(beta, x), log_kappa]))
        problem = cp.Problem(cp.Minimize(objective), [x >= -1, x <= 1])

        def set_parameters(theta_row: torch.Tensor) -> None:
            p = family.split_theta(theta_row[None])
            a = p["A"][0].numpy()
            w, v = np.linalg.eigh((a + a.T) / 2)
            g.value = (v * np.sqrt(np.clip(w, 0, None))).T
            b.value, beta.value = p["b"][0].numpy(), p["beta"][0].numpy()
            log_kappa.value = np.log(p["kappa"][0].numpy()).reshape(1)
    elif family.name == "elliptic-pde":
        from ..families.elliptic_pde import XI

        values = np.sqrt(family.grid_weights.numpy())[:, None] * family.grid_values.numpy()
        w, v = np.linalg.eigh(family.stiffness.numpy())
        root = (v * np.sqrt(np.clip(w, 0, None))).T
        scaled, load = cp.Parameter((family.rank, family.rank)), cp.Parameter(family.rank)
        y = values @ x
        objective = 0.5 * cp.sum_squares(cp.pos(y)) + 0.5 * (1 - XI) * cp.sum_squares(cp.neg(y)) \
            + cp.sum_squares(scaled @ x) - load @ x
        problem = cp.Problem(cp.Minimize(objective))

        def set_parameters(theta_row: torch.Tensor) -> None:
            scaled.value = np.sqrt(float(theta_row[0]) / 4) * root
            load.value = family.load(theta_row[None], torch.float64)[0].numpy()
    elif family.name == "hedging":
        w, v = np.linalg.eigh(family.quadratic.numpy())
        root = (v * np.sqrt(np.clip(w, 0, None))).T
        unconstrained = cp.Parameter(family.rank)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(root @ x - root @ unconstrained)), [x[0] >= 0, x[0] <= 10])

        def set_parameters(theta_row: torch.Tensor) -> None:
            unconstrained.value = family.unconstrained(theta_row[None])[0][0].numpy()
    else:
        raise ValueError(f"no CVXPY formulation of {family.name}")
    return problem, x, set_parameters


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
    start_residual = family.certificate(answer, theta)
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
            from .polish import polish

            started = time.perf_counter()
            newton = polish(family, answer, theta, tol, POLISH_BUDGET)
            entry |= {"newton_seconds": forward_seconds + time.perf_counter() - started,
                      "newton_iterations": float(newton.iterations.double().mean()),
                      "newton_converged": float(np.mean([st == "polished" for st in newton.status]))}
        if n_cvxpy and tol in cvxpy_at and cvxpy_available():
            cvx = cvxpy_solve(family, theta[:n_cvxpy], accuracy=tol / 100)
            reached = family.certificate(cvx["x"], theta[:n_cvxpy]) <= tol
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
    from . import bench_plots

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
    bench_plots.time_to_accuracy(curves, out / "time_to_accuracy.png")
    return rows
