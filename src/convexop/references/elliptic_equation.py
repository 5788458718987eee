"""Accurate reference solver for the elliptic-pde family: a semilinear elliptic equation on the line.

For each instance (nu, a, c), with xi = 0.5 and the source s(u) = a (u - c) exp(-(u - c)^2):

    y - (nu / 2) y'' - xi min(y, 0) = s   on R,   y -> 0 as |u| -> inf,

the Euler-Lagrange equation of the strongly convex energy int phi(y) + (nu/4) y'^2 - s y with
phi(y) = y^2/2 - (xi/2) min(y, 0)^2 (convex for xi < 1), so the solution exists and is unique.

Method: second-order central finite differences on the uniform grid u_i = i h of [-W, W] with
y(+-W) = 0, and semismooth Newton on the active set {y < 0}: the discrete equation
A y - xi min(y, 0) = s (A = I + (nu/2) tridiag(-1, 2, -1) / h^2, an M-matrix) is piecewise linear,
so each Newton step solves the symmetric positive definite tridiagonal system
(A - xi diag(1{y_i < 0})) y_new = s; the iteration stops when the active set repeats (the discrete
equation then holds to round-off, which is checked). It starts from the outer solution
s / (1 - xi 1{s < 0}) and needs 2-4 steps.
- Domain: outside |u| <= 7 the source is below 1e-14 (|c| <= 2 adds at most 1: half-width 8), and
  the solution decays like exp(-|u| sqrt(2 (1 - xi) / nu)); W = 8 + 25 sqrt(nu) makes the
  truncation error below 1e-10 (measured: widening by 15 changes nothing at 1e-16).
- Spacing: h = (10/499) / k, k = max(64, 2 ceil(32 sqrt(0.01 / nu))), even, so every point of the
  evaluation grid linspace(-5, 5, 500) is a grid node (other points: linear interpolation). The
  solution's third derivative jumps where y crosses 0 (the kink of min(y, 0)), in a layer of width
  ~ sqrt(nu); k grows like nu^(-1/2) to keep h / sqrt(nu) fixed below nu = 0.01.
Measured max-norm self-convergence on the evaluation points (k against 2k): <= 1e-6 at the default
k for nu in [1e-4, 1], a in [1, 5], c in [-1, 1] (tests/test_elliptic_pde.py checks <= 1e-5).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla

__all__ = ["REFERENCE_METHOD", "default_refinement", "half_width", "solve_elliptic", "solve_one", "source"]

REFERENCE_METHOD = (
    "second-order finite differences on [-W, W], W = 8 + 25 sqrt(nu), y(+-W) = 0, spacing "
    "(10/499)/k with k = max(64, 2 ceil(32 sqrt(0.01/nu))), semismooth Newton on the active set "
    "{y < 0} to the exact discrete solution; max-norm self-convergence error <= 1e-5"
)

BASE_SPACING = 10.0 / 499.0  # spacing of the evaluation points linspace(-5, 5, 500)
XI = 0.5


def source(u, a, c):
    """s(u) = a (u - c) exp(-(u - c)^2), broadcast."""
    shifted = np.asarray(u, dtype=np.float64) - c
    return a * shifted * np.exp(-shifted**2)


def default_refinement(nu: float) -> int:
    """Even refinement factor k of the grid spacing (10/499)/k."""
    return max(64, 2 * math.ceil(32.0 * math.sqrt(0.01 / nu)))


def half_width(nu: float) -> float:
    """Half-width W of the computational domain: a multiple of 10/499 at least 8 + 25 sqrt(nu)."""
    return math.ceil((8.0 + 25.0 * math.sqrt(nu)) / BASE_SPACING) * BASE_SPACING


def solve_one(nu: float, a: float, c: float, refinement: int | None = None, xi: float = XI,
              max_newton: int = 100) -> tuple[np.ndarray, np.ndarray, int]:
    """One instance on its grid: returns (grid (N,), values (N,), Newton steps)."""
    if not (nu > 0 and math.isfinite(nu)):
        raise ValueError(f"nu must be finite and > 0, got {nu}")
    if not 0 <= xi < 1:
        raise ValueError(f"xi must be in [0, 1), got {xi}")
    k = default_refinement(nu) if refinement is None else int(refinement)
    if k < 2 or k % 2:
        raise ValueError(f"refinement must be an even integer >= 2, got {k}")
    h = BASE_SPACING / k
    nodes = round(half_width(nu) / BASE_SPACING) * k
    grid = h * np.arange(-nodes, nodes + 1)
    inner = grid[1:-1]
    s = source(inner, a, c)
    coupling = nu / (2.0 * h * h)
    banded = np.empty((2, len(inner)))  # upper form for solveh_banded: [super-diagonal; diagonal]
    banded[0, 0] = 0.0
    banded[0, 1:] = -coupling
    y = np.where(s < 0, s / (1.0 - xi), s)
    active = None
    for step in range(1, max_newton + 1):
        new_active = y < 0
        if active is not None and np.array_equal(new_active, active):
            break
        active = new_active
        banded[1] = 1.0 + 2.0 * coupling - xi * active
        y = sla.solveh_banded(banded, s, check_finite=False)
    else:
        raise RuntimeError(f"semismooth Newton did not settle in {max_newton} steps (nu={nu}, a={a}, c={c})")
    full = np.concatenate([[0.0], y, [0.0]])
    residual = (full[1:-1] - coupling * (full[2:] - 2 * full[1:-1] + full[:-2])
                - xi * np.minimum(full[1:-1], 0.0) - s)
    round_off = 1e-13 * (1.0 + 4.0 * coupling) * (1.0 + np.abs(full).max())
    if np.abs(residual).max() > round_off:
        raise RuntimeError(f"discrete equation not satisfied (nu={nu}, a={a}, c={c})")
    return grid, full, step - 1


def solve_elliptic(theta: np.ndarray, points: np.ndarray, refinement: int | None = None,
                   xi: float = XI) -> np.ndarray:
    """theta (n, 3) rows (nu, a, c) -> (n, len(points)) values of y at the points, float64."""
    theta = np.asarray(theta, dtype=np.float64).reshape(-1, 3)
    points = np.asarray(points, dtype=np.float64)
    out = np.empty((len(theta), len(points)))
    for i, (nu, a, c) in enumerate(theta):
        grid, values, _ = solve_one(float(nu), float(a), float(c), refinement, xi)
        out[i] = np.interp(points, grid, values)
    return out
