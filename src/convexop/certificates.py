"""Certificates of optimality for in-basis programs  min_x F(x) = S(x) + h(x),  x: (batch, R).

Exact families (DESIGN.md sections 1 and 3) split their in-basis program f(E x) + g_theta(E x) into
- a smooth convex part S (batched, differentiable; its gradient comes from autograd), and
- a convex part h with an exact proximal map *in coefficient space* (a `convexop.prox.Prox`, or
  None for h = 0: where f o E is smooth, all of F goes into S).

The certificate of a candidate x is the prox-gradient residual (the norm of the gradient mapping)

    r(x) = || x - prox_{t h}(x - t grad S(x)) || / t,

at the documented step t = program.step: 1 / lipschitz when a bound on the Lipschitz constant of
grad S is known, else 1. r(x) >= 0, and r(x) = 0 exactly when x minimises F (for every t > 0); for
h = 0 it is ||grad S(x)||, whatever t. The report adds the objective F(x), the constraint violation
(the distance from x to dom h when h is an indicator, else 0) and, when the optimum x* is known,
the gap F(x) - F(x*) and the distance ||x - x*||.

Families call `CompositeProgram(...)` in their `program(theta)`; `Family.certificate` then returns
`program.residual(x)`. Pure maths: imports torch and the prox library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .prox import Prox

__all__ = ["CompositeProgram", "certificate_report"]

Smooth = Callable[[torch.Tensor], torch.Tensor]  # (batch, R) -> (batch,)


@dataclass
class CompositeProgram:
    """min_x smooth(x) + nonsmooth(x) for a batch of instances.

    smooth: (batch, R) -> (batch,), convex and differentiable (autograd);
    nonsmooth: a Prox acting on the last dimension (None: h = 0);
    lipschitz: (batch,) bound on the Lipschitz constant of grad smooth, or None (not globally
        L-smooth: solvers backtrack, the certificate uses t = 1);
    strong_convexity: (batch,) lower bound on the strong-convexity modulus of F, when known
        (informational: it bounds ||x - x*|| <= r(x) / mu for h = 0).
    """

    smooth: Smooth
    nonsmooth: Prox | None = None
    lipschitz: torch.Tensor | None = None
    strong_convexity: torch.Tensor | None = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1) certificate step t: 1 / lipschitz, or 1 when no bound is known."""
        if self.lipschitz is None:
            return torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return (1.0 / self.lipschitz.to(x)).reshape(-1, 1)

    def value_and_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """smooth(x) (batch,) and its gradient (batch, R), detached."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            value = self.smooth(x)
            (gradient,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), gradient.detach()

    def prox(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """prox_{step h}(x); step (batch, 1)."""
        if self.nonsmooth is None:
            return x
        return self.nonsmooth(x, step)

    def forward_backward(self, x: torch.Tensor, step: torch.Tensor,
                         gradient: torch.Tensor | None = None) -> torch.Tensor:
        """One forward-backward step prox_{t h}(x - t grad S(x)); step (batch, 1)."""
        if gradient is None:
            gradient = self.value_and_gradient(x)[1]
        return self.prox(x - step * gradient, step)

    def residual(self, x: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        """(batch,) certificate r(x) = ||x - prox_{t h}(x - t grad S(x))|| / t at t = self.step."""
        x = x.detach()
        t = self.step(x) if step is None else step
        return ((x - self.forward_backward(x, t)) / t).norm(dim=-1)

    def nonsmooth_value(self, x: torch.Tensor) -> torch.Tensor:
        if self.nonsmooth is None:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        return self.nonsmooth.value(x)

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """(batch,) F(x) = S(x) + h(x) (+inf outside dom h)."""
        with torch.no_grad():
            return self.smooth(x) + self.nonsmooth_value(x)

    def violation(self, x: torch.Tensor) -> torch.Tensor:
        """(batch,) distance from x to dom h when h is an indicator (a projection), else 0."""
        if self.nonsmooth is None or not self.nonsmooth.is_indicator:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            return (x - self.nonsmooth(x, 1.0)).norm(dim=-1)


def certificate_report(program: CompositeProgram, x: torch.Tensor,
                       optimum: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-instance residual, objective, violation and, with the optimum x* (batch, R),
    gap F(x) - F(x*) and distance ||x - x*||; all (batch,)."""
    report = {"residual": program.residual(x), "objective": program.objective(x),
              "violation": program.violation(x)}
    if optimum is not None:
        optimum = optimum.to(x)
        report["gap"] = report["objective"] - program.objective(optimum)
        report["distance"] = (x - optimum).norm(dim=-1)
    return report
