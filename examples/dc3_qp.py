"""The DC3 benchmark QP (Donti, Rolnick and Kolter, 2021) through `convexop.from_cvxpy` route (b).

    minimise_y  1/2 y'Qy + p'y    s.t.  A y = x,  G y <= h

with 100 variables, 50 equalities and 50 inequalities: Q = diag(U[0,1]), p ~ U[0,1], A, G ~ N(0,1),
h_i = sum_j |(G A^+)_ij| (so y = A^+ x is feasible for every x in [-1,1]^50), seed 17; the right-hand
side x ~ U[-1,1]^50 is the parameter. convexop turns it into the Lagrangian dual over
(lambda, mu >= 0), trains the GEO there and recovers y in closed form (equalities exact, then a
step from the strictly feasible A^+ x keeps the inequalities); `--polish` solves the KKT
system of the predicted active set. The built-in family `qp-dc3` is the same problem with its
benchmark settings.

    python examples/dc3_qp.py --steps 2000
    convexop train examples/dc3_qp.py:family --out runs/dc3
"""

import cvxpy as cp
import numpy as np

import convexop

N, N_EQ, N_INEQ = 100, 50, 50
_rng = np.random.default_rng(17)
Q = np.diag(_rng.random(N))
P_LIN = _rng.random(N)
A = _rng.normal(size=(N_EQ, N))
G = _rng.normal(size=(N_INEQ, N))
H = np.abs(G @ np.linalg.pinv(A)).sum(axis=1)

y = cp.Variable(N, name="y")
x = cp.Parameter(N_EQ, name="x")
problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(y, Q) + P_LIN @ y), [A @ y == x, G @ y <= H])


def sampler(n, rng):
    return {"x": rng.uniform(-1.0, 1.0, (n, N_EQ))}


PINV_A = np.linalg.pinv(A)


def interior(theta):
    """A^+ x is strictly feasible for every x in [-1, 1]^50 (that is how DC3 chose h)."""
    return np.asarray(theta["x"]) @ PINV_A.T


family = convexop.from_cvxpy(problem, sampler, name="dc3-qp", interior=interior)

if __name__ == "__main__":
    from convexop.api import example_main

    example_main(family)
