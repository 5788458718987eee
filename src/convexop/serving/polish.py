"""Polishing a family's answers: its in-basis program through the kit's one `polish` entry.

`polish_answers(family, x, theta, tol)` starts at the model's answers x (batch, R) and stops each
instance as soon as its certificate measure (solvers/program.py) is <= tol; an instance still above
tol after `max_iterations` keeps its best point and `converged` False: nothing passes silently.
Instances the program proves unbounded below (`program.unbounded()`) are not polished (`converged`
False, measure inf, 0 iterations).
Supervised families (heat-pde, utility-max) are refused with an InputError naming --polish.

`compare_with_cold_start` measures the iterations saved: the same polish, the same tol, started at
zero instead of at the model's answers, and cold-start FISTA (`ratio_vs_cold_fista`). An "iteration"
is one FISTA step, one active-set Newton round or one KKT solve (each a linear solve).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..families import Family
from ..solvers.polish import DEFAULT_ITERATIONS, polish
from ..solvers.program import SolveResult

__all__ = ["DEFAULT_ITERATIONS", "check_polishable", "compare_with_cold_start", "polish_answers"]


def check_polishable(family: Family) -> None:
    """Raise InputError (field --polish) unless certificates apply to the family."""
    if not family.exact:
        raise InputError("--polish", None, "",
                         f"{family.name} is not an exact convex program (its target is not argmin f + g), "
                         "so there is nothing to polish towards")


def polish_answers(family: Family, x: torch.Tensor, theta: torch.Tensor, tol: float,
                   max_iterations: int = DEFAULT_ITERATIONS, method: str = "auto") -> SolveResult:
    """Polish x (batch, R) for the instances theta (batch, P) to certificate measure <= tol (float64);
    method "fista" forces warm-started FISTA (the benchmarks' baseline)."""
    check_polishable(family)
    theta = theta.detach().double()
    program, x = family.program(theta), family.finalise(x.detach())
    unbounded = program.unbounded()
    if unbounded is None or not bool(unbounded.any()):
        return polish(program, x, tol, max_iterations, method)
    # instances proven unbounded below have no minimiser to polish towards: kept as they are, not converged
    keep = torch.nonzero(~unbounded, as_tuple=True)[0]
    measure = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)
    out = SolveResult(x.clone(), measure, torch.zeros(len(x), dtype=torch.int64, device=x.device),
                      torch.zeros(len(x), dtype=torch.bool, device=x.device))
    if len(keep):
        part = polish(program.subset(keep), x[keep], tol, max_iterations, method)
        out.x[keep], out.residual[keep], out.iterations[keep], out.converged[keep] = (
            part.x, part.residual, part.iterations, part.converged)
    return out


def compare_with_cold_start(family: Family, warm: torch.Tensor, theta: torch.Tensor, tol: float,
                            max_iterations: int = DEFAULT_ITERATIONS) -> dict[str, Any]:
    """Iterations to certificate <= tol from the model's answers `warm` (batch, R) and from zero.

    Returns per-instance iteration counts, their means and medians, the fractions that converged,
    and `ratio` = mean cold iterations / mean warm iterations (over instances where both converged).
    """
    zero = torch.zeros_like(warm, dtype=torch.float64)
    warm_result = polish_answers(family, warm, theta, tol, max_iterations)
    cold_result = polish_answers(family, zero, theta, tol, max_iterations)
    cold_fista = polish_answers(family, zero, theta, tol, max_iterations, "fista")
    both = (warm_result.converged & cold_result.converged).cpu().numpy()
    warm_iterations = warm_result.iterations.cpu().numpy()
    cold_iterations = cold_result.iterations.cpu().numpy()
    mean_warm = float(warm_iterations[both].mean()) if both.any() else math.nan
    mean_cold = float(cold_iterations[both].mean()) if both.any() else math.nan
    start = family.certificate(family.finalise(warm), theta.double())
    return {
        "tol": float(tol),
        "instances": len(both),
        "warm_iterations": warm_iterations.tolist(),
        "cold_iterations": cold_iterations.tolist(),
        "warm_mean": mean_warm,
        "cold_mean": mean_cold,
        "warm_median": float(np.median(warm_iterations[both])) if both.any() else math.nan,
        "cold_median": float(np.median(cold_iterations[both])) if both.any() else math.nan,
        "warm_converged": float(warm_result.converged.double().mean()),
        "cold_converged": float(cold_result.converged.double().mean()),
        "ratio": mean_cold / mean_warm if both.any() and mean_warm > 0 else math.inf,
        "cold_fista_mean": float(cold_fista.iterations.double().mean()),
        "ratio_vs_cold_fista": (float(cold_fista.iterations.double().mean()) / mean_warm
                                if both.any() and mean_warm > 0 else math.inf),
        "start_measure_median": float(torch.median(start.measure).item()),
    }
