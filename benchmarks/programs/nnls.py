import cvxpy as cp
import numpy as np

import convexop

rng = np.random.default_rng(1)
A = rng.normal(size=(30, 12))
x = cp.Variable(12, name="x")
b = cp.Parameter(30, name="b")
problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b)), [x >= 0])
family = convexop.from_cvxpy(problem, lambda n, rng: {"b": rng.normal(size=(n, 30))})
