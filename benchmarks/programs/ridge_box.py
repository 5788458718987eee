"""Box-constrained ridge regression through `from_torch`: min 1/2 ||X w - y||^2 + mu/2 ||w||^2, |w| <= 0.5,
with the targets y the parameter (X fixed 50 x 15)."""
import numpy as np
import torch

import convexop
from convexop.prox import Box

rng = np.random.default_rng(4)
X = torch.as_tensor(rng.normal(size=(50, 15)) / np.sqrt(50))
MU = 0.1


def g(w, theta):
    r = w @ X.to(w).T - theta["y"]
    return 0.5 * (r * r).sum(-1) + 0.5 * MU * (w * w).sum(-1)


def sampler(n, rng):
    return {"y": rng.normal(size=(n, 15)) @ X.numpy().T + 0.1 * rng.normal(size=(n, 50))}


L = float(torch.linalg.eigvalsh(X.T @ X)[-1]) + MU
family = convexop.from_torch(g, Box(-0.5, 0.5), variables={"w": 15}, parameters={"y": 50}, sampler=sampler,
                             name="ridge-box", lipschitz=lambda theta: torch.full((len(theta["y"]),), L))
