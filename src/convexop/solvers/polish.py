"""One polish entry: `polish(program, x, tol)` improves candidates until they are certified.

Dispatch by what the program is and offers (each algorithm lives once, in this package):
- a QP dual (`qp.QPDualProgram`): the active-set KKT polish with FISTA fallback;
- a composite program with `newton=True` whose non-smooth part is a sum of zero, box, L1 and
  simplex pieces: active-set Newton rounds (closed-form Hessian where the program has one), then FISTA;
- otherwise: warm-started FISTA.
method="fista" forces warm-started FISTA (the baseline the benchmarks compare against).
Every instance stops when its certificate measure (solvers/program.py) is <= tol; one that is
still above tol after `max_iterations` keeps its best point and `converged` False.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .fista import fista
from .newton import active_set_newton, newton_supported
from .program import CompositeProgram, SolveResult
from .qp_program import QPDualProgram

__all__ = ["DEFAULT_ITERATIONS", "MAX_ITERATIONS", "METHODS", "check_polish_settings", "polish"]

DEFAULT_ITERATIONS = 10_000
MAX_ITERATIONS = 10_000_000
METHODS = ("auto", "fista")


def check_polish_settings(tol: float, max_iterations: int) -> None:
    """Raise InputError naming --polish / --polish-iterations unless tol is a finite number > 0 and
    max_iterations an integer in [1, MAX_ITERATIONS]."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise InputError("--polish", tol, "finite numbers > 0")
    if (isinstance(max_iterations, bool) or not isinstance(max_iterations, int)
            or not 1 <= max_iterations <= MAX_ITERATIONS):
        raise InputError("--polish-iterations", max_iterations, f"integers in [1, {MAX_ITERATIONS}]")


def polish(program: CompositeProgram, x: torch.Tensor, tol: float, max_iterations: int = DEFAULT_ITERATIONS,
           method: str = "auto") -> SolveResult:
    """Polish candidates x (batch, R) of `program` to certificate measure <= tol (float64)."""
    check_polish_settings(tol, max_iterations)
    if method not in METHODS:
        raise InputError("method", method, "one of " + ", ".join(METHODS))
    x = x.detach().double()
    if method == "auto" and isinstance(program, QPDualProgram):
        return program.polish(x, float(tol), max_iterations)
    if method == "auto" and program.newton and newton_supported(program.nonsmooth):
        return active_set_newton(program, x, float(tol), max_iterations)
    return fista(program, x, float(tol), max_iterations)
