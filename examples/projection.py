"""A family written by hand: the Euclidean projection of b onto the non-negative orthant, warped by
a quadratic, min_x 1/2 (x - b)' Q (x - b) s.t. x >= 0 (Q fixed, b the parameter).

    convexop train examples/projection.py:family --out runs/projection
    convexop solve runs/projection --instances in.json --out out.json --polish 1e-8

The five things that define it: its parameters and their law (`parameters`, `sample`), the basis
(identity here), the fixed part f (a prox-library function), the instance loss g (batched over
instances and over query points), and what the solvers may know (`lipschitz`, `has_hessian`);
`default_training` sets `train`'s defaults.
Everything else (activation, certificate, polish, in-basis optimum, reference) is derived.
"""

import numpy as np
import torch

from convexop.basis import Basis
from convexop.families import Family, Parameter
from convexop.prox import NonNegative

Q = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]], dtype=torch.float64)


class WarpedProjection(Family):
    exact = True  # the target is argmin f + g: certificates and polishing apply
    newton_polish = True  # polish by active-set Newton (a box-constrained quadratic)
    has_hessian = True
    parameters = (Parameter("b", shape=(3,), law="N(0, I)"),)

    def __init__(self) -> None:
        super().__init__(Basis(["x1", "x2", "x3"], np.eye(3), np.ones(3), np.arange(3.0)))
        self.name = "warped-projection"
        self.f = NonNegative()

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        return rng.standard_normal((n, 3))

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """x: (batch, 3) or (batch, M, 3); theta: (batch, 3) -> (batch,) or (batch, M)."""
        d = x - (theta if x.dim() == 2 else theta[:, None, :]).to(x.dtype)
        return 0.5 * ((d @ Q.to(x.dtype)) * d).sum(-1)

    def lipschitz(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.full((len(theta),), float(torch.linalg.eigvalsh(Q)[-1]), dtype=torch.float64)

    def hessian(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return Q.to(x.dtype).expand(len(x), -1, -1)

    @classmethod
    def default_training(cls) -> dict:
        """Layers started as relaxed projected-gradient steps (step 1 / L, exact central differences)."""
        return {"model": {"depth": 10, "width": 6, "gamma": 0.5, "init": "forward-backward"},
                "training": {"steps": 1000, "batch_size": 256, "lr": 3e-3, "n_instances": 2000}}


family = WarpedProjection()
