"""The authors' reference for the heat-pde family: multilevel Picard (MLP) approximation.

Backward form of the PDE of `heat_equation`: d_t v + (nu/2) v_uu + q(v) = 0, v(T) = y0,
q(y) = xi min(y, 0), so that y(T, u) = v(0, u). With U_0 = 0, the MLP recursion is

    U_n(t, x) = (1/M^n) sum_{i=1}^{M^n} y0(x + sqrt(nu) W^i_{T-t})
              + sum_{l=0}^{n-1} ((T-t)/M^{n-l}) sum_{i=1}^{M^{n-l}}
                    [q(U_l(R_i, Y_i)) - 1_{l>0} q(U_{l-1}(R_i, Y_i))],

R_i ~ Uniform[t, T], Y_i = x + sqrt(nu) W_{R_i - t}, with fresh independent randomness for every
term and every recursive call (U_l and U_{l-1} inside one summand are independent too). The l = 0
summand vanishes because q(U_0) = q(0) = 0.

Vectorisation: all evaluation points x share the random draws (as in the authors' code), and the
M^{n-l} independent recursive calls of one sum are evaluated together as one batch, so a call
handles B independent (t_b, x_b) pairs with t: (B,), x: (B, P). Python recursion depth is n and
the number of Python-level calls is small (about 30 for n = M = 5); the largest array is
(M^n, P) floats.
"""

from __future__ import annotations

import numpy as np

from .heat_equation import initial_condition

__all__ = ["REFERENCE_METHOD", "multilevel_picard_heat"]

REFERENCE_METHOD = (
    "multilevel Picard approximation (n = M = 5) of the backward Feynman-Kac fixed point, one "
    "Monte Carlo realisation shared by all evaluation points (authors' reference)"
)


def _mlp(level, base, t, x, nu, xi, horizon, rng):
    """Batched U_level(t_b, x_b) with independent randomness per batch row b.

    t: (B,), x: (B, P) -> (B, P)."""
    batch, n_points = x.shape
    if level == 0:
        return np.zeros_like(x)
    count = base**level
    # terminal term: mean over M^n Brownian endpoints over [t, T]
    step = np.sqrt(nu * (horizon - t))[:, None] * rng.standard_normal((batch, count))
    total = initial_condition(x[:, None, :] + step[:, :, None]).mean(axis=1)  # (B, P)
    # Picard corrections, l = 1 .. level-1 (l = 0 contributes q(0) = 0)
    for lower in range(1, level):
        reps = base ** (level - lower)
        r = t[:, None] + (horizon - t)[:, None] * rng.random((batch, reps))  # (B, reps)
        step = np.sqrt(nu * (r - t[:, None])) * rng.standard_normal((batch, reps))
        y = (x[:, None, :] + step[:, :, None]).reshape(batch * reps, n_points)
        r = r.reshape(batch * reps)
        diff = xi * np.minimum(_mlp(lower, base, r, y, nu, xi, horizon, rng), 0.0)
        if lower > 1:
            diff -= xi * np.minimum(_mlp(lower - 1, base, r, y, nu, xi, horizon, rng), 0.0)
        total += ((horizon - t) / reps)[:, None] * diff.reshape(batch, reps, n_points).sum(axis=1)
    return total


def multilevel_picard_heat(nu, points, *, levels=5, xi=0.5, horizon=1.0, rng):
    """MLP estimate U_{levels}(0, points) of y(horizon, points) with M = levels.

    nu: float > 0; points: (P,); rng: numpy Generator. Returns (P,) float64."""
    nu = float(nu)
    if not np.isfinite(nu) or nu <= 0.0:
        raise ValueError("nu must be finite and positive")
    if int(levels) < 1:
        raise ValueError("levels must be at least 1")
    points = np.atleast_1d(np.asarray(points, dtype=np.float64))
    if points.ndim != 1:
        raise ValueError("points must be one-dimensional")
    t0 = np.zeros(1)
    return _mlp(int(levels), int(levels), t0, points[None, :], nu, xi, float(horizon), rng)[0]
