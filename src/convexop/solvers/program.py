"""The in-basis program  min_x F(x) = S(x) + h(x),  x: (batch, R),  and its certificate.

Exact families split f(E x) + g_theta(E x) into a smooth convex part S (batched, differentiable; its
gradient by autograd) and a convex part h with an exact prox *in coefficient space* (a
`convexop.prox.Prox`, or None for h = 0: where f o E is smooth, all of F goes into S).

Every answer of an exact family carries one `Certificate` with one meaning for every family:

- `residual`: the prox-gradient residual r(x) = ||x - prox_{t h}(x - t grad S(x))|| at the
  documented step t = program.step (1 / lipschitz when a bound is known, else 1), in the units of x.
  r(x) >= 0 and r(x) = 0 exactly when x minimises F;
- `gap`: a bound on the relative objective gap where the program kind has one (QP duals: the
  relative duality gap of the recovered primal answer, `qp.QPDualProgram`), else None;
- `violation`: the max primal constraint violation (composite programs: the distance from x to
  dom h when h is an indicator, else 0; QP duals: of the recovered primal answer);
- `objective`: F(x) (QP duals: the primal objective of the recovered answer).

An answer is *certified at tol* when `measure <= tol`, where measure = max(gap, violation) for
program kinds with a gap and max(residual, violation) otherwise. Solvers (FISTA, active-set
Newton, the QP polish) stop each instance on this same measure.

Pure maths: imports torch and the prox library only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..prox import Prox

__all__ = ["Certificate", "CompositeProgram", "SolveResult", "curvature"]

Tensor = torch.Tensor
Smooth = Callable[[Tensor], Tensor]  # (batch, R) -> (batch,)


# polishes give answers certified at tol but above this fraction of it one finishing Newton/KKT step
# (solvers/newton.py, qp.py): a certificate bounds the objective gap, the step lands on the minimiser
FINISH_FRACTION = 1e-3


@dataclass
class Certificate:
    """Per-instance certificate of candidates x (batch, R); every field (batch,) or None."""

    residual: Tensor
    violation: Tensor
    objective: Tensor
    gap: Tensor | None = None
    infeasible: Tensor | None = None  # (batch,) bool where the program kind can prove infeasibility
    unbounded: Tensor | None = None  # (batch,) bool where the program kind can prove unboundedness

    @property
    def measure(self) -> Tensor:
        """(batch,) max(gap or residual, violation): the number compared with a tolerance."""
        primary = self.residual if self.gap is None else self.gap
        return torch.maximum(primary, self.violation)

    def certified(self, tol: float) -> Tensor:
        """(batch,) bool: measure <= tol (NaN never certified)."""
        return self.measure <= tol


@dataclass
class SolveResult:
    """What every solver of the kit returns for n instances."""

    x: Tensor  # (n, R)
    residual: Tensor  # (n,) stopping measure at x (`Certificate.measure`)
    iterations: Tensor  # (n,) int64: forward-backward steps, Newton rounds or KKT solves
    converged: Tensor  # (n,) bool: residual <= tol


@dataclass
class CompositeProgram:
    """min_x smooth(x) + nonsmooth(x) for a batch of instances.

    smooth: (batch, R) -> (batch,) (also (batch, K, R) -> (batch, K)), convex, differentiable;
    nonsmooth: a Prox acting on the last dimension (None: h = 0);
    lipschitz: (batch,) bound on the Lipschitz constant of grad smooth, or None (solvers backtrack,
        the certificate uses t = 1);
    strong_convexity: (batch,) lower bound on the strong-convexity modulus of F, when known;
    hessian: x (batch, R) -> (batch, R, R) closed-form (generalised) Hessian of smooth, or None
        (active-set Newton then differentiates the gradient centrally);
    newton: polish by active-set Newton where the non-smooth part allows it (else FISTA);
    select: index (k,) -> the program of those instances (solvers drop finished instances).
    """

    smooth: Smooth
    nonsmooth: Prox | None = None
    lipschitz: Tensor | None = None
    strong_convexity: Tensor | None = None
    hessian: Callable[[Tensor], Tensor] | None = None
    newton: bool = False
    select: Callable[[Tensor], CompositeProgram] | None = None

    def subset(self, index: Tensor) -> CompositeProgram:
        """The program of the instances `index` (k,)."""
        if self.select is None:
            raise ValueError("this program was built without `select`, so it cannot be restricted to a subset")
        return self.select(index)

    def step(self, x: Tensor) -> Tensor:
        """(batch, 1) certificate step t: 1 / lipschitz, or 1 when no bound is known."""
        if self.lipschitz is None:
            return torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return (1.0 / self.lipschitz.to(x)).reshape(-1, 1)

    def value_and_gradient(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """smooth(x) (batch,) and its gradient (batch, R), detached."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            value = self.smooth(x)
            (gradient,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), gradient.detach()

    def prox(self, x: Tensor, step: Tensor) -> Tensor:
        """prox_{step h}(x); step (batch, 1)."""
        if self.nonsmooth is None:
            return x
        return self.nonsmooth(x, step)

    def forward_backward(self, x: Tensor, step: Tensor, gradient: Tensor | None = None) -> Tensor:
        """One forward-backward step prox_{t h}(x - t grad S(x)); step (batch, 1)."""
        if gradient is None:
            gradient = self.value_and_gradient(x)[1]
        return self.prox(x - step * gradient, step)

    def residual(self, x: Tensor) -> Tensor:
        """(batch,) r(x) = ||x - prox_{t h}(x - t grad S(x))|| at t = self.step (units of x)."""
        x = x.detach()
        return (x - self.forward_backward(x, self.step(x))).norm(dim=-1)

    def nonsmooth_value(self, x: Tensor) -> Tensor:
        if self.nonsmooth is None:
            return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        return self.nonsmooth.value(x)

    def objective(self, x: Tensor) -> Tensor:
        """(batch,) F(x) = S(x) + h(x) (+inf outside dom h)."""
        with torch.no_grad():
            return self.smooth(x) + self.nonsmooth_value(x)

    def violation(self, x: Tensor) -> Tensor:
        """(batch,) distance from x to dom h when h is an indicator (a projection), else 0."""
        if self.nonsmooth is None or not self.nonsmooth.is_indicator:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            return (x - self.nonsmooth(x, 1.0)).norm(dim=-1)

    def gap(self, x: Tensor) -> Tensor | None:
        """(batch,) relative objective gap bound; None: this program kind has none."""
        return None

    def measure(self, x: Tensor) -> Tensor:
        """(batch,) the stopping measure of the solvers: `Certificate.measure` without the objective."""
        gap = self.gap(x)
        return torch.maximum(self.residual(x) if gap is None else gap, self.violation(x))

    def unbounded(self) -> Tensor | None:
        """(batch,) bool: instances proven unbounded below (a property of the instance, not of x);
        None where the program kind has no such proof (quadratic programs have one: solvers/unbounded.py)."""
        return None

    def certificate(self, x: Tensor) -> Certificate:
        """The certificate of candidates x (batch, R) (module doc)."""
        return Certificate(self.residual(x), self.violation(x), self.objective(x), self.gap(x),
                           unbounded=self.unbounded())


def curvature(smooth: Smooth, x: Tensor, iterations: int = 20, seed: int = 0) -> Tensor:
    """(batch,) an estimate of the largest Hessian eigenvalue of `smooth` at x (batch, R): power
    iteration on central gradient differences (H v ~ (grad S(x + h v) - grad S(x - h v)) / 2h, h
    relative to |x|). An estimate, never a bound: for a step size where no Lipschitz bound is known
    (e.g. the GEO's forward-backward initialisation), not for certificates."""
    x = x.detach()
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v = v / v.norm(dim=-1, keepdim=True)
    h = 1e-4 * (1 + x.norm(dim=-1, keepdim=True))
    estimate = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    def gradient(point: Tensor) -> Tensor:
        with torch.enable_grad():
            point = point.requires_grad_(True)
            (out,) = torch.autograd.grad(smooth(point).sum(), point)
        return out.detach()

    for _ in range(iterations):
        hv = (gradient(x + h * v) - gradient(x - h * v)) / (2 * h)
        estimate = (hv * v).sum(-1)
        norm = hv.norm(dim=-1, keepdim=True)
        v = torch.where(norm > 0, hv / norm.clamp_min(1e-300), v)
    return estimate.clamp_min(0.0)
