"""A batch of QP duals (solvers/qp.py) as an in-basis program: the certificate of the QP kind, the
active-set KKT polish, and the exact quadratic expansion of the dual at query points."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..prox import Box
from .program import Certificate, CompositeProgram
from .quadratic import quadratic_queries as expansion

if TYPE_CHECKING:
    from .qp import QPDual, QPPolishResult

__all__ = ["QPDualProgram", "quadratic_queries"]

Tensor = torch.Tensor


class QPDualProgram(CompositeProgram):
    """The dual of a batch of QPs as an in-basis program over coefficients x (z = x @ C.T).

    Its certificate (solvers/program.py) is the QP kind's: `residual` the prox-gradient residual of the
    dual program in x, `gap` the relative duality gap of the closed-form primal answer
    (`QPDual.recover`), `violation` that answer's max primal violation (and any negative mu),
    `objective` its primal objective; certified when max(gap, violation) <= tol. Polished by the
    active-set KKT polish (`QPDual.polish`). With `restore` (default) and a dual built with a phase-I
    solve, answers that violate the inequalities are restored (`QPDual.recover`) before they are
    certified, and `certificate.infeasible` marks instances the phase-I solve proved infeasible."""

    def __init__(self, dual: QPDual, interior: Tensor | None, coordinates: Tensor | None,
                 inverse: Tensor | None, lipschitz: Tensor, objective: Callable[[Tensor], Tensor] | None,
                 slack_weight: float = 0.0, restore: bool = True) -> None:
        self.dual, self.interior, self.slack_weight, self.restore = dual, interior, slack_weight, restore
        self.coordinates, self.inverse, self.objective_map = coordinates, inverse, objective
        lower = [-math.inf] * dual.me + [0.0] * dual.mi
        super().__init__(lambda x: dual.smooth(self.multipliers(x)), Box(lower, [math.inf] * dual.m), lipschitz,
                         select=self._select)

    def _select(self, index: Tensor) -> QPDualProgram:
        lipschitz = self.lipschitz if self.lipschitz.shape[0] == 1 else self.lipschitz[index]
        interior = None if self.interior is None else self.interior[index]
        return QPDualProgram(self.dual.subset(index), interior, self.coordinates, self.inverse, lipschitz,
                             self.objective_map, self.slack_weight, self.restore)

    def multipliers(self, x: Tensor) -> Tensor:
        """Coefficients x (..., m) -> dual multipliers z = [lambda, mu] (..., m)."""
        return x if self.coordinates is None else x @ self.coordinates.to(x).T

    def value_and_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """g(x) and its gradient in closed form: grad_z = M z + c, grad_x = E' grad_z (no autograd)."""
        z = self.multipliers(x.detach())
        gradient = (self.dual.factors["M"].to(z) @ z[..., None])[..., 0] + self.dual.linear.to(z)
        return self.dual.smooth(z), gradient if self.coordinates is None else gradient @ self.coordinates.to(z)

    def coefficients(self, z: Tensor) -> Tensor:
        """Multipliers z (batch, m) -> coefficients x."""
        return z if self.inverse is None else z @ self.inverse.to(z).T

    def primal(self, x: Tensor) -> Tensor:
        """(batch, n) the closed-form primal answer of x (feasible when `interior` is given or the dual
        restores feasibility)."""
        return self.dual.recover(self.multipliers(x.double()), self.interior, self.restore)[0]

    def _pair(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.dual.certificate(self.multipliers(x.double()), self.interior, self.restore)

    def certificate(self, x: Tensor) -> Certificate:
        """The QP kind's certificate (class doc), with `infeasible` where a phase-I solve proved it."""
        gap, violation, objective = self.dual.assess(*self.dual.recover(self.multipliers(x.double()), self.interior,
                                                                        self.restore))
        if self.objective_map is not None:
            objective = self.objective_map(objective)
        out = Certificate(self.residual(x), violation, objective, gap)  # one recovery for all four fields
        out.infeasible = self.dual.infeasible() if self.restore and self.dual.restore is not None else None
        return out

    def gap(self, x: Tensor) -> Tensor:
        return self._pair(x)[0]

    def violation(self, x: Tensor) -> Tensor:
        return self._pair(x)[1]

    def measure(self, x: Tensor) -> Tensor:
        return torch.maximum(*self._pair(x))

    def objective(self, x: Tensor) -> Tensor:
        value = self.dual.primal_objective(self.primal(x))
        return value if self.objective_map is None else self.objective_map(value)

    def polish(self, x: Tensor, tol: float, max_iterations: int) -> QPPolishResult:
        """The active-set KKT polish from x (batch, m); the result's x in coefficients."""
        result = self.dual.polish(self.multipliers(x.double()), tol, max_iterations, interior=self.interior,
                                  slack_weight=self.slack_weight)
        result.x = self.coefficients(result.x)
        return result


def quadratic_queries(dual: QPDual, z: torch.Tensor, directions: torch.Tensor, constant: bool = False) -> torch.Tensor:
    """g(z + d_m) of a QP dual for z (B, m) and directions (M, m) -> (B, M) by the exact quadratic
    expansion (`quadratic.quadratic_queries`, with g = 1/2 z'Mz + c'z + const); constant=False leaves
    out 1/2 q'P^-1 q (as `QPDual.smooth`)."""
    const = dual.factors["const"] if constant else torch.zeros_like(dual.factors["const"])
    return expansion(dual.factors["M"], dual.linear, const, z, directions)
