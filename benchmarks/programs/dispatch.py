"""Economic dispatch: 8 generators meet a demand at least cost (quadratic + linear costs), within bounds.
Route (b): a strongly convex QP with one equality (the demand) and bounds. Parameters: the demand and
the linear costs."""
import cvxpy as cp
import numpy as np

import convexop

G = 8
rng = np.random.default_rng(3)
quadratic = rng.uniform(0.5, 2.0, G)
upper = rng.uniform(1.0, 3.0, G)
p = cp.Variable(G, name="p")
demand = cp.Parameter(name="demand")
cost = cp.Parameter(G, name="cost")
problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(quadratic, cp.square(p))) / 2 + cost @ p),
                     [cp.sum(p) == demand, p >= 0, p <= upper])


def sampler(n, rng):
    return {"demand": rng.uniform(0.2, 0.8, n) * upper.sum(), "cost": rng.uniform(0.5, 2.0, (n, G))}


family = convexop.from_cvxpy(problem, sampler, name="dispatch")
