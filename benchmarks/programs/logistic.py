import cvxpy as cp
import numpy as np

import convexop

rng = np.random.default_rng(2)
X = rng.normal(size=(40, 8))
w = cp.Variable(8, name="w")
y = cp.Parameter(40, name="y")  # labels in {-1, 1}, given as the parameter
problem = cp.Problem(cp.Minimize(cp.sum(cp.logistic(-cp.multiply(y, X @ w))) / 40 + 0.05 * cp.norm1(w)))


def sampler(n, rng):
    truth = rng.normal(size=(n, 8))
    return {"y": np.sign(np.einsum("ij,nj->ni", X, truth) + 0.5 * rng.normal(size=(n, 40)))}


family = convexop.from_cvxpy(problem, sampler)
