"""Box-constrained model-predictive control through `convexop.from_cvxpy` (route a: simple sets).

A double integrator (position, velocity; dt = 0.1) tracks a position reference over T = 12 steps
with inputs |u_k| <= 1. Condensed form: the states are affine in the initial state x0 and the
inputs, x = Phi x0 + Gamma u, so the program is a box-constrained QP in u alone:

    minimise_u  sum_k (p_k - r_k)^2 + 0.1 sum_k v_k^2 + 0.01 ||u||^2    s.t.  -1 <= u <= 1

with the initial state x0 (2,) and the reference r (T,) as parameters.

    python examples/mpc.py --steps 2000
    convexop train examples/mpc.py:family --out runs/mpc
"""

import cvxpy as cp
import numpy as np

import convexop

T, DT = 12, 0.1
A = np.array([[1.0, DT], [0.0, 1.0]])
B = np.array([[0.5 * DT * DT], [DT]])
Phi = np.stack([np.linalg.matrix_power(A, k + 1) for k in range(T)])  # (T, 2, 2)
Gamma = np.zeros((T, 2, T))
for k in range(T):
    for j in range(k + 1):
        Gamma[k, :, j] = (np.linalg.matrix_power(A, k - j) @ B)[:, 0]

u = cp.Variable(T, name="u")
x0 = cp.Parameter(2, name="x0")
r = cp.Parameter(T, name="r")
positions = Phi[:, 0, :] @ x0 + Gamma[:, 0, :] @ u
velocities = Phi[:, 1, :] @ x0 + Gamma[:, 1, :] @ u
problem = cp.Problem(cp.Minimize(cp.sum_squares(positions - r) + 0.1 * cp.sum_squares(velocities)
                                 + 0.01 * cp.sum_squares(u)), [u >= -1, u <= 1])


def sampler(n, rng):
    start = np.column_stack([rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n)])
    target = rng.uniform(-1, 1, (n, 1)) * np.ones((1, T))  # a step to a new set point
    return {"x0": start, "r": target}


family = convexop.from_cvxpy(problem, sampler, name="mpc")

if __name__ == "__main__":
    from convexop.api import example_main

    example_main(family)
