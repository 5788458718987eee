"""Throughput and FLOPs of the GEO on the exact families (toy-box, elliptic-pde, hedging).

`throughput`: instances per second at batch 1, 64 and 4096 of the GEO's batched forward, of CVXPY
(Clarabel) one instance at a time (measured on a subset and extrapolated: CVXPY solves instances
one by one, so its rate does not depend on the batch) and of our batched FISTA from zero run to the
GEO's accuracy (the median certificate of the GEO's answers); then, at batch 4096, FISTA's rate
against the tolerance, and the tolerance above which FISTA from zero beats the GEO's forward.

`flops`: the FLOPs of one GEO forward (one instance), counted from the layer

    L [2 R^2 (A_l x) + 2 R M (B_l q) + g(M queries) + act] + 2 R^2 (read-out) + act,

where the cost of the family's g at M queries and of its activation P prox_f E are measured with
torch.utils.flop_counter.FlopCounterMode (which counts matrix products: mm, bmm, einsum; the
elementwise work of the prox, logsumexp, bias and relaxation is not counted), and the fraction of
this machine's peak it reaches at batch 4096 (peak = a large float32 matmul, same thread count).
"""

from __future__ import annotations

import itertools
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .cases import Row, case, row
from .solvers import (
    EXACT,
    cvxpy_available,
    cvxpy_solve,
    describe,
    geo_forward,
    instances,
    solve_to,
    solver_geo,
    timed,
)

BATCHES = (1, 64, 4096)
SWEEP = tuple(10.0 ** (-k / 2) for k in range(2, 13))  # 1e-1 ... 1e-6, half decades


# ----- FLOPs ---------------------------------------------------------------------------------
def counted_flops(function) -> int:
    """Matrix-product FLOPs of function() as counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        function()
    return int(counter.get_total_flops())


def geo_flops(model) -> dict[str, int]:
    """FLOPs of one unrolled GEO forward for one instance, by part (see the module docstring)."""
    if model.mode != "unrolled":
        raise ValueError("FLOPs are counted for the unrolled GEO")
    family = model.family
    rank, width, depth = family.rank, model.width, model.depth
    theta = instances(family, 1, 0).to(model.A.dtype)
    queries = torch.zeros(1, width, rank, dtype=model.A.dtype)
    g = counted_flops(lambda: family.g(queries, theta))
    activation = counted_flops(lambda: family.activation(torch.zeros(1, rank, dtype=model.A.dtype)))
    parts = {"A x": depth * 2 * rank * rank, "B q": depth * 2 * rank * width, "g queries": depth * g,
             "activation": (depth + 1) * activation, "read-out": 2 * rank * rank}
    parts["total"] = sum(parts.values())
    return parts


def peak_flops(size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a size x size float32 matmul on the current thread count (best of `repeats`)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    _, seconds = timed(lambda: a @ b, min_seconds=0.3, repeats=repeats)
    return 2.0 * size**3 / seconds


# ----- throughput ----------------------------------------------------------------------------
def geo_rate(model, theta: torch.Tensor) -> float:
    """Instances per second of the GEO's forward on the batch theta."""
    _, seconds = timed(lambda: geo_forward(model, theta), min_seconds=0.2)
    return len(theta) / seconds


def fista_rate(family, theta: torch.Tensor, tol: float, single: int = 20) -> tuple[float, float]:
    """(instances per second, mean iterations) of batched FISTA from zero to certificate <= tol on
    the batch theta; a batch of one is timed as `single` separate one-instance solves."""
    batches = [r[None] for r in instances(family, single, 41)] if len(theta) == 1 else [theta]
    zero = torch.zeros(len(batches[0]), family.rank, dtype=torch.float64)
    solve_to(family, zero, batches[0], tol)  # warm-up
    iterations, started = [], time.perf_counter()
    for batch in batches:
        iterations.append(solve_to(family, zero, batch, tol).iterations.double())
    seconds = time.perf_counter() - started
    return sum(len(b) for b in batches) / seconds, float(torch.cat(iterations).mean())


def crossover(tolerances: list[float], fista_rates: list[float], geo: float) -> float:
    """The tolerance at which FISTA's rate (rising with the tolerance) reaches the GEO's rate,
    interpolated in log-log; 0 if FISTA is faster everywhere, inf if slower everywhere."""
    pairs = sorted(zip(tolerances, fista_rates))
    if pairs[0][1] >= geo:
        return 0.0
    for (t0, r0), (t1, r1) in itertools.pairwise(pairs):
        if r0 < geo <= r1:
            w = (math.log(geo) - math.log(r0)) / (math.log(r1) - math.log(r0))
            return float(math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0))))
    return math.inf


def throughput_family(model, n_cvxpy: int, batches=BATCHES, sweep=SWEEP) -> dict[str, Any]:
    family = model.family
    theta = instances(family, max(batches), 31)
    answer = geo_forward(model, theta)
    tol = float(family.certificate(answer, theta).measure.median())
    out: dict[str, Any] = {"geo_residual": tol, "batches": {}}
    for batch in batches:
        rate, iterations = fista_rate(family, theta[:batch], tol)
        out["batches"][batch] = {"geo": geo_rate(model, theta[:batch]), "fista": rate, "fista_iterations": iterations}
    if n_cvxpy and cvxpy_available():
        cvx = cvxpy_solve(family, theta[:n_cvxpy])
        rebuilt = cvxpy_solve(family, theta[:max(5, n_cvxpy // 10)], rebuild=True)
        out["cvxpy"] = {"rate": 1.0 / cvx["seconds"], "solver_rate": 1.0 / cvx["solver_seconds"],
                        "rebuilt_rate": 1.0 / rebuilt["seconds"], "n": n_cvxpy,
                        "residual_max": float(family.certificate(cvx["x"], theta[:n_cvxpy]).measure.max())}
    big = max(batches)
    geo = out["batches"][big]["geo"]
    tolerances, fista_rates, warm_rates = [], [], []
    for t in sorted(sweep, reverse=True):  # loose to tight; stop once FISTA is 20x slower than the GEO
        tolerances.append(t)
        fista_rates.append(fista_rate(family, theta, t)[0])
        started = time.perf_counter()  # GEO forward + polish from its answer
        solve_to(family, geo_forward(model, theta), theta, t)
        warm_rates.append(big / (time.perf_counter() - started))
        if fista_rates[-1] < geo / 20:
            break
    out["sweep"] = {"tolerances": tolerances, "fista_rate": fista_rates, "warm_rate": warm_rates,
                    "geo_rate": geo, "geo_residual": tol, "batch": big,
                    "cvxpy_rate": out.get("cvxpy", {}).get("rate"),
                    "crossover": crossover(tolerances, fista_rates, geo)}
    return out


@case("throughput")
def throughput(out: Path, quick: bool) -> list[Row]:
    """Instances per second at batch 1, 64 and 4096: GEO forward (float32), CVXPY (Clarabel; DPP problem
    compiled once, solved one instance at a time on a subset, the rate extrapolated to every batch),
    batched FISTA from zero to the GEO's median certificate; and the certificate tolerance above which
    FISTA from zero stops being slower than the GEO's forward (batch 4096). hedging: CVXPY solves its
    in-basis QP, FISTA runs on it with x_u = A^+ H computed once per instance (the GEO's g recomputes
    it in every layer)."""
    from . import plots  # matplotlib only when a case draws

    n_cvxpy = 50 if quick else 200
    rows, curves = [], {}
    for name in EXACT:
        model, settings = solver_geo(out, name, quick)
        result = throughput_family(model, n_cvxpy)
        curves[name] = result["sweep"]
        s = f"{describe(name, settings)}, float32 forward, zero start"
        tol = result["geo_residual"]
        rows.append(row("throughput", f"{name}: accuracy of the GEO (median certificate)", tol, setting=s))
        cvx = result.get("cvxpy")
        for batch, r in result["batches"].items():
            rows += [row("throughput", f"{name} batch {batch}: GEO instances/s", r["geo"], setting=s),
                     row("throughput", f"{name} batch {batch}: FISTA to the GEO's accuracy, instances/s", r["fista"],
                         setting=f"zero start, per-instance stop at certificate <= {tol:.3g}, "
                                 f"{r['fista_iterations']:.1f} iterations mean"),
                     row("throughput", f"{name} batch {batch}: GEO / FISTA", r["geo"] / r["fista"],
                         "> 1" if batch == max(BATCHES) else None,
                         r["geo"] > r["fista"] if batch == max(BATCHES) else None, s)]
            if cvx:
                ratio = r["geo"] / cvx["rate"]
                rows.append(row("throughput", f"{name} batch {batch}: GEO / CVXPY", ratio,
                                ">= 100" if batch == max(BATCHES) else None,
                                ratio >= 100 if batch == max(BATCHES) else None,
                                f"CVXPY {cvx['rate']:.0f}/s per instance, measured on {cvx['n']} and extrapolated"))
        if cvx:
            rows += [row("throughput", f"{name}: CVXPY (Clarabel) instances/s, DPP problem compiled once", cvx["rate"],
                         setting=f"{cvx['n']} instances one by one, default tolerances (max certificate "
                                 f"{cvx['residual_max']:.1e}); extrapolated to every batch size"),
                     row("throughput", f"{name}: Clarabel solver alone instances/s", cvx["solver_rate"],
                         setting="solver_stats.solve_time, without CVXPY's overhead"),
                     row("throughput", f"{name}: CVXPY instances/s, problem rebuilt per instance", cvx["rebuilt_rate"],
                         setting="build + compile + solve each instance")]
        sweep = result["sweep"]
        rows.append(row("throughput", f"{name}: FISTA from zero beats the GEO forward above tolerance",
                        sweep["crossover"], f"> GEO accuracy {tol:.2g}", sweep["crossover"] > tol,
                        f"batch {sweep['batch']}, tolerances 1e-1 to {min(sweep['tolerances']):.0e} (half decades, "
                        "until FISTA is 20x slower than the GEO), log-log interpolation; inf: FISTA slower at every "
                        "tolerance tried"))
    plots.throughput_against_tolerance(curves, out / "throughput_tolerance.png")
    return rows


@case("flops")
def flops(out: Path, quick: bool) -> list[Row]:
    """FLOPs per GEO forward (analytic count, g and the activation measured with FlopCounterMode)
    and the fraction of this machine's float32 matmul peak reached at batch 4096."""
    peak = peak_flops()
    threads = torch.get_num_threads()
    rows = [row("flops", "peak float32 matmul GFLOP/s", peak / 1e9,
                setting=f"1024 x 1024 @ 1024 x 1024, {threads} thread(s)")]
    for name in EXACT:
        model, settings = solver_geo(out, name, quick)
        parts = geo_flops(model)
        theta = instances(model.family, 4096, 31)
        check = counted_flops(partial(model.coefficients, theta[:64].float())) / 64
        rate = geo_rate(model, theta)
        achieved = parts["total"] * rate
        breakdown = ", ".join(f"{k} {v:,}" for k, v in parts.items() if k != "total")
        rows += [row("flops", f"{name}: FLOPs per GEO forward (one instance)", parts["total"],
                     setting=f"{describe(name, settings)}: {breakdown}"),
                 row("flops", f"{name}: count / FlopCounterMode on the whole forward", parts["total"] / check,
                     "= 1", abs(parts["total"] / check - 1) < 1e-9, "batch 64"),
                 row("flops", f"{name}: GFLOP/s at batch 4096", achieved / 1e9,
                     setting=f"{rate:.0f} instances/s"),
                 row("flops", f"{name}: fraction of peak at batch 4096", achieved / peak,
                     setting="matrix products only; float32; elementwise work not counted")]
    return rows

