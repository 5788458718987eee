"""Long-only Markowitz portfolios on the simplex through `convexop.from_cvxpy` (route a).

    minimise_w  gamma (||F' w||^2 + ||d * w||^2) - mu' w     s.t.  sum(w) == 1, w >= 0

over n = 20 assets with a k = 3 factor model: the expected returns mu (n,) and the factor loadings
F (n, k) are the parameters, the idiosyncratic volatilities d and the risk aversion gamma are fixed.
f is the indicator of the simplex (its projection is the GEO's activation).

    python examples/markowitz.py --steps 2000
    convexop train examples/markowitz.py:family --out runs/markowitz
"""

import cvxpy as cp
import numpy as np

import convexop

N, K, GAMMA = 20, 3, 2.0
D = np.linspace(0.1, 0.3, N)

w = cp.Variable(N, name="w")
mu = cp.Parameter(N, name="mu")
F = cp.Parameter((N, K), name="F")
problem = cp.Problem(cp.Minimize(GAMMA * (cp.sum_squares(F.T @ w) + cp.sum_squares(cp.multiply(D, w))) - mu @ w),
                     [cp.sum(w) == 1, w >= 0])


def sampler(n, rng):
    return {"mu": rng.normal(0.05, 0.05, (n, N)), "F": rng.normal(0.0, 0.15, (n, N, K))}


family = convexop.from_cvxpy(problem, sampler, name="markowitz")

if __name__ == "__main__":
    from convexop.api import example_main

    example_main(family)
