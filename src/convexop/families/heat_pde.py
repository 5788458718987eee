"""`heat-pde`: the authors' experiment 1 (nonlinear heat equation), a *supervised* family.

Target: y(T, u) on 500 points of [-5, 5] for d_t y = (nu/2) y_uu + xi min(y, 0), xi = 0.5,
y(0, u) = 5 u exp(-u^2), T = 1, with nu = 0.01 + 0.39 Beta(1, 2).
Structure (the authors'): g_nu(x) = (nu/2) int |d_u E x|^2 du on R Hermite functions, and f the
half-quadratic penalty (c/2) int min(y,0)^2 with c = xi/(2 - xi), whose prox is the activation
y - (xi/2) min(y, 0). Both are minimised by y = 0, so argmin f + g = 0 is *not* the PDE solution:
the family is not exact, the GEO is trained supervised, and certificates/polishing do not apply.
Deviation from the authors' code: the projection back onto the basis uses the trapezoid L2 inner
product, not a grid mean (which scales the coefficients by ~0.0998).
"""

from __future__ import annotations

import numpy as np
import torch

from ..basis import hermite_basis
from ..errors import InputError
from ..prox import negative_part_penalty
from .base import Family
from .parameters import Parameter, Pointwise

XI = 0.5


class HeatPDE(Family):
    name = "heat-pde"
    exact = False
    parameters = (
        Parameter("nu", low=0.0, high=1.0, low_open=True, law="0.01 + 0.39 Beta(1, 2)",
                  description="diffusivity (the solver is verified on [0.01, 0.4])"),
    )
    @property
    def reference_method(self) -> str:  # type: ignore[override]
        from ..references import heat_equation

        return heat_equation.REFERENCE_METHOD

    def __init__(self, rank: int = 8, scale: float = 1.0) -> None:
        if not (isinstance(rank, int) and 1 <= rank <= 40):
            raise InputError("rank", rank, "integers in [1, 40]")
        if not (isinstance(scale, (int, float)) and 0.05 <= scale <= 5):
            raise InputError("scale", scale, "[0.05, 5]")
        points = np.linspace(-5.0, 5.0, 500)
        basis = hermite_basis(points, rank, float(scale))
        super().__init__(basis, rank=rank, scale=float(scale))
        derivative = basis.derivative
        stiffness = derivative.T @ (basis.weights[:, None] * derivative)
        self.register_buffer("stiffness", torch.as_tensor(stiffness), persistent=False)
        self.f = Pointwise(negative_part_penalty(XI))  # its prox at step 1: y - (xi/2) min(y, 0)

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        if law != "train":
            raise InputError("law", law, "train")
        return (0.01 + 0.39 * rng.beta(1.0, 2.0, size=n))[:, None]

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        nu = theta[:, 0].to(x.dtype)
        k = self.stiffness.to(x.dtype)
        if x.dim() == 2:
            return 0.5 * nu * torch.einsum("bi,ij,bj->b", x, k, x)
        return 0.5 * nu[:, None] * torch.einsum("bmi,ij,bmj->bm", x, k, x)

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        from ..references import heat_equation

        return self.solve_in_chunks(
            theta, 100, lambda rows: heat_equation.solve_heat_reaction(rows[:, 0], self.points, xi=XI), progress)

    def reference_error(self) -> float:
        return 1e-5

    @classmethod
    def default_training(cls):
        return {"model": {"depth": 10, "width": 20, "gamma": 0.5},
                "training": {"steps": 4000, "batch_size": 400, "lr": 3e-3}}
