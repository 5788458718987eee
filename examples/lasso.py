"""LASSO with the right-hand side as the parameter, through `convexop.from_torch`.

    minimise_x  1/2 ||D x - b||^2 + lam ||x||_1        (D fixed 30 x 20, lam = 0.1, b the parameter)

f = lam ||.||_1 comes from the prox library (soft thresholding is the GEO's activation), g is a
batched torch function. b is drawn as D x0 + noise with a sparse x0.

    python examples/lasso.py --steps 2000    # train a GEO, then gaps, certificates, polish savings
    convexop train examples/lasso.py:family --out runs/lasso
"""

import numpy as np
import torch

import convexop
from convexop.prox import L1

M, N, LAM = 30, 20, 0.1
_rng = np.random.default_rng(0)
D = torch.as_tensor(_rng.standard_normal((M, N)) / np.sqrt(M))


def g(x, theta):
    residual = x @ D.to(x).T - theta["b"]
    return 0.5 * (residual * residual).sum(-1)


def sampler(n, rng):
    x0 = rng.standard_normal((n, N)) * (rng.random((n, N)) < 0.2)
    return {"b": x0 @ D.numpy().T + 0.05 * rng.standard_normal((n, M))}


lipschitz = float(torch.linalg.eigvalsh(D.T @ D)[-1])
family = convexop.from_torch(g, L1(LAM), variables={"x": N}, parameters={"b": M}, sampler=sampler,
                             name="lasso", lipschitz=lambda theta: torch.full((len(theta["b"]),), lipschitz))


if __name__ == "__main__":
    from convexop.api import example_main

    example_main(family)
