"""Exact minimisers of smooth convex losses over a coordinate box, batched (float64).

Projected-gradient warm start (FISTA with adaptive restart) followed by an active-set Newton
refinement: coordinates at a bound whose gradient pushes outward are fixed, the free block is
solved by (damped) Newton steps, and the active set is updated until the KKT conditions hold.
Used as the reference for `toy-box` and as the in-basis optimum of small box-constrained programs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Loss = Callable[[torch.Tensor], torch.Tensor]  # (batch, R) -> (batch,)


def _grad_hess(loss: Loss, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(loss(x).sum(), x, create_graph=True)[0]
    rows = [torch.autograd.grad(grad[:, j].sum(), x, retain_graph=True)[0] for j in range(x.shape[1])]
    return grad.detach(), torch.stack(rows, dim=1).detach()


def box_residual(loss: Loss, x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                 step: torch.Tensor | float = 1.0) -> torch.Tensor:
    """|| x - clip(x - step grad, lower, upper) || per instance: zero exactly at the box minimiser.
    step: float or (batch, 1)."""
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(loss(x).sum(), x)[0]
    return (x - torch.clamp(x - step * grad, lower, upper)).norm(dim=-1).detach()


def minimise_over_box(loss: Loss, lower: torch.Tensor, upper: torch.Tensor, x0: torch.Tensor,
                      lipschitz: torch.Tensor, tol: float = 1e-10, warm_iterations: int = 2000,
                      newton_iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise loss(x) over lower <= x <= upper for a batch of instances.

    lower, upper: (R,) or (batch, R); x0: (batch, R); lipschitz: (batch,) bound on grad's constant.
    Returns (x, residual) with residual the prox-gradient residual at step 1/lipschitz.
    """
    with torch.enable_grad():  # gradients of the loss are needed even under no_grad callers
        return _minimise_over_box(loss, lower, upper, x0, lipschitz, tol, warm_iterations, newton_iterations)


def _minimise_over_box(loss, lower, upper, x0, lipschitz, tol, warm_iterations, newton_iterations):
    lower = torch.broadcast_to(lower, x0.shape)
    upper = torch.broadcast_to(upper, x0.shape)
    step = (1.0 / lipschitz)[:, None]
    x = torch.clamp(x0, lower, upper).double()
    y, t = x.clone(), torch.ones(x.shape[0], 1, dtype=x.dtype)
    for _ in range(warm_iterations):
        yy = y.detach().requires_grad_(True)
        grad = torch.autograd.grad(loss(yy).sum(), yy)[0]
        new = torch.clamp(y - step * grad, lower, upper)
        restart = ((y - new) * (new - x)).sum(-1, keepdim=True) > 0
        t_new = (1 + torch.sqrt(1 + 4 * t**2)) / 2
        y = torch.where(restart, new, new + (t - 1) / t_new * (new - x))
        t = torch.where(restart, torch.ones_like(t), t_new)
        x = new
    for _ in range(newton_iterations):
        grad, hess = _grad_hess(loss, x)
        at_low = (x <= lower + 1e-12) & (grad > 0)
        at_high = (x >= upper - 1e-12) & (grad < 0)
        free = ~(at_low | at_high)
        eye = torch.eye(x.shape[1], dtype=x.dtype).expand_as(hess)
        mask = free[:, :, None] & free[:, None, :]
        system = torch.where(mask, hess, eye) + 1e-14 * eye
        rhs = torch.where(free, grad, torch.zeros_like(grad))
        direction = torch.linalg.solve(system, rhs[..., None])[..., 0]
        current = loss(x).detach()
        stepsize = torch.ones(x.shape[0], 1, dtype=x.dtype)
        candidate = torch.clamp(x - direction, lower, upper)
        for _ in range(30):  # backtracking keeps Newton monotone on the non-quadratic part
            worse = (loss(candidate).detach() > current + 1e-15 * current.abs())[:, None]
            if not worse.any():
                break
            stepsize = torch.where(worse, stepsize / 2, stepsize)
            candidate = torch.where(worse, torch.clamp(x - stepsize * direction, lower, upper), candidate)
        x = candidate
        if (box_residual(loss, x, lower, upper, step) <= tol).all():
            break
    return x.detach(), box_residual(loss, x, lower, upper, step)
