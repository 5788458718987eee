"""A batch of composite programs whose smooth part is an explicit quadratic,
S(x) = 1/2 x'P x + q'x + c, read once per batch (e.g. off a CVXPY objective): the smooth value, its
gradient and its Hessian are closed forms (no automatic differentiation), the Lipschitz bound is
lambda_max(P), and a subset slices the data instead of rebuilding it (the solvers drop finished
instances at every round)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..prox import Prox
from .program import CompositeProgram

__all__ = ["QuadraticProgram", "quadratic_queries", "quadratic_value"]

Tensor = torch.Tensor


def _rows(tensor: Tensor, index: Tensor) -> Tensor:
    return tensor if tensor.shape[0] == 1 else tensor[index]


def quadratic_value(p: Tensor, q: Tensor, c: Tensor, x: Tensor) -> Tensor:
    """1/2 x'Px + q'x + c at x (B, R) -> (B,) or at x (B, K, R) -> (B, K), in x's dtype."""
    p, q, c = p.to(x), q.to(x), c.to(x)
    if x.dim() == 2:
        return 0.5 * ((x[:, None, :] @ p)[:, 0] * x).sum(-1) + (q * x).sum(-1) + c
    return 0.5 * ((x @ p) * x).sum(-1) + (q[:, None] * x).sum(-1) + c[:, None]


def quadratic_queries(p: Tensor, q: Tensor, c: Tensor, x: Tensor, offsets: Tensor) -> Tensor:
    """S(x + c_m) for x (B, R) and offsets (M, R) -> (B, M) by the exact expansion
    S(x) + <P x + q, c_m> + c_m'P c_m / 2: one gradient per instance (R^2 + M R) instead of M values
    (M R^2); the curvature term is instance-free when P is shared (first dimension 1). In x's dtype,
    differentiable in x and the offsets (the GEO's queries of a quadratic instance loss)."""
    p, q, c = p.to(x), q.to(x), c.to(x)
    px = x @ p[0] if p.shape[0] == 1 else (x[:, None, :] @ p)[:, 0]  # P symmetric: x'P = (Px)'
    value = 0.5 * (px * x).sum(-1) + (q * x).sum(-1) + c
    curvature = 0.5 * ((offsets @ p) * offsets).sum(-1)  # (1|B, M)
    return value[:, None] + (px + q) @ offsets.T + curvature


class QuadraticProgram(CompositeProgram):
    """min_x 1/2 x'P x + q'x + c + h(x) for a batch: P (B|1, R, R) symmetric positive semidefinite
    (shared when its first dimension is 1), q (B, R), c (B,); lipschitz (B,) defaults to lambda_max(P).
    `unbounded()` proves instances unbounded below (solvers/unbounded.py), once per program, or asks
    `proof` (a callable giving the same (B,) flags, e.g. a family's kept result for this batch)."""

    def __init__(self, p: Tensor, q: Tensor, c: Tensor, nonsmooth: Prox | None, lipschitz: Tensor | None = None,
                 newton: bool = True, proof: Callable[[], Tensor] | None = None) -> None:
        self.p, self.q, self.c = p, q, c
        self._proof, self._unbounded = proof, None
        if lipschitz is None:
            lipschitz = torch.linalg.eigvalsh(p)[:, -1].clamp_min(1e-12)
        lipschitz = lipschitz.expand(q.shape[0]) if lipschitz.shape[0] == 1 else lipschitz
        super().__init__(self._smooth, nonsmooth, lipschitz, hessian=self._hessian, newton=newton,
                         select=self._select)

    def _smooth(self, x: Tensor) -> Tensor:
        return quadratic_value(self.p, self.q, self.c, x)

    def _hessian(self, x: Tensor) -> Tensor:
        return self.p.to(x).expand(x.shape[0], -1, -1)

    def _select(self, index: Tensor) -> QuadraticProgram:
        return QuadraticProgram(_rows(self.p, index), self.q[index], self.c[index], self.nonsmooth,
                                self.lipschitz[index], self.newton, proof=lambda: self.unbounded()[index])

    def unbounded(self) -> Tensor:
        """(B,) bool: the instances proven unbounded below (all False where h has a piece the proof does
        not cover)."""
        if self._unbounded is None:
            from .unbounded import proven_unbounded  # it solves its own quadratic program

            self._unbounded = (self._proof() if self._proof is not None
                               else proven_unbounded(self.p, self.q, self.nonsmooth))
        return self._unbounded

    def value_and_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """S(x) and P x + q in closed form."""
        x = x.detach()
        px = (x[:, None, :] @ self.p.to(x))[:, 0]
        return 0.5 * (px * x).sum(-1) + (self.q.to(x) * x).sum(-1) + self.c.to(x), px + self.q.to(x)
