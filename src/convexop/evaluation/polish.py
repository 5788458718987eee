"""Polishing: warm-started FISTA on the in-basis program until the certificate is <= tol.

`polish(family, x, theta, tol)` starts batched FISTA / forward-backward (with adaptive restart, and
backtracking where the program has no global Lipschitz bound; references/forward_backward.py) at the
model's answers x (batch, R) and stops each instance as soon as its certificate
`family.certificate(x, theta)` (the `residual` that `solve` reports) is <= tol: status "polished".
An instance still above tol after `max_iterations` forward-backward steps gets "not_converged" and
keeps its last iterate; nothing passes silently. Supervised families (heat-pde), and exact families
that declare no in-basis program, are refused with an InputError.

`compare_with_cold_start` measures the iterations saved: the same solver, the same tol, started at
zero instead of at the model's answer, and cold-start FISTA (`ratio_vs_cold_fista`). Families may
polish by their own method (`Family.polish_answers`: active-set Newton, a QP's KKT solve); then an
"iteration" is one Newton round or KKT solve (each a linear solve) or one FISTA step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..families import Family
from ..references.forward_backward import fista

DEFAULT_ITERATIONS = 10_000
STATUSES = ("ok", "polished", "not_converged")


@dataclass
class PolishResult:
    x: torch.Tensor  # (batch, R) float64
    residual: torch.Tensor  # (batch,) certificate at x
    iterations: torch.Tensor  # (batch,) forward-backward steps taken
    status: list[str]  # "polished" | "not_converged"


def certified_measure(family: Family, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(batch,) max(certificate, violation): an answer is certified when both are <= tol (the
    violation is 0 for FISTA iterates of an indicator; it matters for QP duals, whose certificate
    is the duality gap of a recovered primal that may be infeasible)."""
    residual = family.certificate(x, theta)
    violation = family.violation(x, theta)
    return residual if violation is None else torch.maximum(residual, violation)


def check_polishable(family: Family, theta: torch.Tensor) -> None:
    """Raise InputError (field --polish) unless certificates apply to the family."""
    if not family.exact:
        raise InputError("--polish", None, "",
                         f"{family.name} is not an exact convex program (its target is not argmin f + g), "
                         "so there is nothing to polish towards")
    if family.program(theta[:1]) is None:
        raise InputError("--polish", None, "", f"{family.name} declares no in-basis program to polish")


def check_settings(tol: float, max_iterations: int) -> None:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise InputError("--polish", tol, "finite numbers > 0")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)) or max_iterations < 0:
        raise InputError("--polish-iterations", max_iterations, "integers >= 0")


def polish(family: Family, x: torch.Tensor, theta: torch.Tensor, tol: float,
           max_iterations: int = DEFAULT_ITERATIONS, method: str = "auto") -> PolishResult:
    """Polish x (batch, R) for the instances theta (batch, P) to certificate <= tol (float64).
    method "auto": the family's own polish (active-set Newton, QP KKT) where it has one, else
    FISTA; "fista": warm-started FISTA always (the baseline the benchmarks compare against)."""
    check_settings(tol, max_iterations)
    theta = theta.detach().double()
    check_polishable(family, theta)
    result = None
    if method == "auto":
        result = family.polish_answers(x.detach().double(), theta, float(tol), max_iterations)
    elif method != "fista":
        raise InputError("method", method, "auto, fista")
    if result is None:
        result = fista(lambda index: family.program(theta[index]), x.detach().double(), float(tol), max_iterations,
                       measure=lambda z, index: certified_measure(family, z, theta[index]))
    status = ["polished" if ok else "not_converged" for ok in result.converged.tolist()]
    return PolishResult(result.x, result.residual, result.iterations, status)


def compare_with_cold_start(family: Family, warm: torch.Tensor, theta: torch.Tensor, tol: float,
                            max_iterations: int = DEFAULT_ITERATIONS) -> dict[str, Any]:
    """Iterations to certificate <= tol from the model's answers `warm` (batch, R) and from zero.

    Returns per-instance iteration counts, their means and medians, the fractions that converged,
    and `ratio` = mean cold iterations / mean warm iterations (over instances where both converged).
    """
    warm_result = polish(family, warm, theta, tol, max_iterations)
    cold_result = polish(family, torch.zeros_like(warm, dtype=torch.float64), theta, tol, max_iterations)
    cold_fista = polish(family, torch.zeros_like(warm, dtype=torch.float64), theta, tol, max_iterations, "fista")
    both = np.array([a == b == "polished" for a, b in zip(warm_result.status, cold_result.status)])
    warm_iterations = warm_result.iterations.cpu().numpy()
    cold_iterations = cold_result.iterations.cpu().numpy()
    mean_warm = float(warm_iterations[both].mean()) if both.any() else math.nan
    mean_cold = float(cold_iterations[both].mean()) if both.any() else math.nan
    return {
        "tol": float(tol),
        "instances": len(both),
        "warm_iterations": warm_iterations.tolist(),
        "cold_iterations": cold_iterations.tolist(),
        "warm_mean": mean_warm,
        "cold_mean": mean_cold,
        "warm_median": float(np.median(warm_iterations[both])) if both.any() else math.nan,
        "cold_median": float(np.median(cold_iterations[both])) if both.any() else math.nan,
        "warm_converged": float(np.mean([s == "polished" for s in warm_result.status])),
        "cold_converged": float(np.mean([s == "polished" for s in cold_result.status])),
        "ratio": mean_cold / mean_warm if both.any() and mean_warm > 0 else math.inf,
        "cold_fista_mean": float(cold_fista.iterations.double().mean()),
        "ratio_vs_cold_fista": (float(cold_fista.iterations.double().mean()) / mean_warm
                                if both.any() and mean_warm > 0 else math.inf),
        "start_residual_median": float(torch.median(family.certificate(warm.double(), theta.double())).item()),
    }
