"""Fixed-point solvers and backward modes for equilibrium (weight-tied) layers.

Forward solvers find x* = T(x*) for a batch, each returning per-sample statistics:
- `picard`: damped Picard iteration x <- (1 - damping) x + damping T(x);
- `anderson`: Anderson acceleration (memory m, mixing beta, Tikhonov regularisation lam),
  the type-II form solved per sample as a small least-squares problem; a sample whose residual
  history is degenerate (e.g. already at its fixed point) takes a plain Picard step instead, so
  the solver never raises on it.
Both stop a sample when ||T(x) - x|| <= max(abs_tol, rel_tol ||T(x)||) and flag the samples that
did not get there within the budget (never silently).

Backward modes (`equilibrium_output`):
- "implicit": implicit differentiation; the adjoint u = grad + J^T u is solved by the same solver,
  so memory does not grow with the number of forward iterations;
- "phantom": the solve runs without gradients, then k damped steps are differentiated;
- "unrolled": every forward iteration is differentiated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Map = Callable[[torch.Tensor], torch.Tensor]
SOLVERS = ("picard", "anderson")
BACKWARDS = ("implicit", "phantom", "unrolled")
_LAM_EPS = 64.0  # floor of the relative Tikhonov weight, in units of the working dtype's eps


@dataclass
class SolveStats:
    """Per-sample statistics of a fixed-point solve (tensors of shape (batch,))."""

    iterations: torch.Tensor
    residual: torch.Tensor
    relative_residual: torch.Tensor
    converged: torch.Tensor


def _residuals(fx: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    absolute = (fx - x).flatten(1).norm(dim=1)
    return absolute, absolute / fx.flatten(1).norm(dim=1).clamp_min(1e-12)


def _done(absolute, relative, abs_tol, rel_tol):
    return (absolute <= abs_tol) | (relative <= rel_tol)


def picard(fn: Map, x0: torch.Tensor, max_iter: int = 50, abs_tol: float = 1e-6,
           rel_tol: float = 1e-6, damping: float = 1.0) -> tuple[torch.Tensor, SolveStats]:
    """Damped Picard iteration. x0: (batch, R)."""
    x = x0
    batch = x.shape[0]
    iterations = torch.zeros(batch, dtype=torch.long, device=x.device)
    active = torch.ones(batch, dtype=torch.bool, device=x.device)
    absolute = relative = torch.full((batch,), float("inf"), device=x.device)
    for _ in range(max_iter):
        fx = fn(x)
        absolute, relative = _residuals(fx, x)
        active = ~_done(absolute, relative, abs_tol, rel_tol)
        if not active.any():
            break
        iterations = iterations + active.long()
        step = (1 - damping) * x + damping * fx
        x = torch.where(active[:, None], step, x)
    fx = fn(x)
    absolute, relative = _residuals(fx, x)
    converged = _done(absolute, relative, abs_tol, rel_tol)
    return x, SolveStats(iterations, absolute, relative, converged)


def _mixing_weights(g: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Anderson weights: argmin ||sum_i alpha_i g_i|| s.t. sum_i alpha_i = 1, per sample.

    g: (batch, n, dim) residual history. Returns alpha (batch, n, 1) and a (batch,) flag of the
    samples whose regularised Gram system was solved to finite weights; never raises.
    Each sample's residuals are first scaled by their largest norm (the weights are invariant to
    it), so the Gram matrix neither underflows nor overflows in the working dtype; the relative
    Tikhonov term lam * mean(diag) is floored at a multiple of the dtype's eps, so it survives the
    rounding of the diagonal, and mean(diag) at eps, so it stays positive for an all-zero history.
    """
    batch, n = g.shape[:2]
    eps = torch.finfo(g.dtype).eps
    size = g.norm(dim=2).amax(dim=1).clamp_min(torch.finfo(g.dtype).tiny)
    g = g / size[:, None, None]
    gram = g @ g.transpose(1, 2)
    scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(eps)[:, None, None]
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    gram = gram + max(lam, _LAM_EPS * eps) * scale * eye  # relative Tikhonov, cannot vanish
    ones = torch.ones(batch, n, 1, dtype=g.dtype, device=g.device)
    alpha, info = torch.linalg.solve_ex(gram, ones)
    alpha = alpha / alpha.sum(dim=1, keepdim=True)
    ok = (info == 0) & torch.isfinite(alpha).all(dim=2).all(dim=1)
    return torch.where(ok[:, None, None], alpha, torch.zeros_like(alpha)), ok


def anderson(fn: Map, x0: torch.Tensor, max_iter: int = 50, abs_tol: float = 1e-6,
             rel_tol: float = 1e-6, memory: int = 5, beta: float = 1.0,
             lam: float = 1e-8) -> tuple[torch.Tensor, SolveStats]:
    """Anderson acceleration on a batch of vectors x0: (batch, R).

    The mixing weights are solved in x0's dtype with a relative Tikhonov term that cannot vanish
    (see `_mixing_weights`); a sample whose Gram system is still singular or gives non-finite
    weights takes the plain Picard step x <- T(x) for that iteration.
    """
    batch, dim = x0.shape[0], x0[0].numel()
    shape = x0.shape
    xs = torch.zeros(batch, memory, dim, dtype=x0.dtype, device=x0.device)
    fs = torch.zeros_like(xs)
    x = x0.reshape(batch, dim)
    fx = fn(x.reshape(shape)).reshape(batch, dim)
    if memory < 2:
        raise ValueError(f"memory must be >= 2, got {memory}")
    xs[:, 0], fs[:, 0] = x, fx
    x = fx
    fx = fn(x.reshape(shape)).reshape(batch, dim)
    xs[:, 1], fs[:, 1] = x, fx
    iterations = torch.full((batch,), 2, dtype=torch.long, device=x0.device)
    frozen = torch.zeros(batch, dtype=torch.bool, device=x0.device)
    best = x.clone()
    filled = torch.zeros(batch, memory, dtype=torch.bool, device=x0.device)  # slots written per sample
    filled[:, :2] = True
    for k in range(2, max_iter):
        n = min(k, memory)
        g = fs[:, :n] - xs[:, :n]  # residuals (batch, n, dim)
        alpha, ok = _mixing_weights(g, lam)
        mixed = (beta * (alpha.transpose(1, 2) @ fs[:, :n]) + (1 - beta) * (alpha.transpose(1, 2) @ xs[:, :n]))[:, 0]
        # degenerate history (singular Gram, non-finite weights): a plain Picard step x <- T(x)
        ok = ok & torch.isfinite(mixed).all(dim=1)
        mixed = torch.where(ok[:, None], mixed, fs[:, (k - 1) % memory])
        absolute, relative = _residuals(fs[:, (k - 1) % memory], xs[:, (k - 1) % memory])
        frozen = frozen | _done(absolute, relative, abs_tol, rel_tol)
        if frozen.all():
            break
        best = torch.where(frozen[:, None], best, mixed)
        x = best
        fx = fn(x.reshape(shape)).reshape(batch, dim)
        slot = k % memory
        xs[:, slot] = torch.where(frozen[:, None], xs[:, slot], x)
        fs[:, slot] = torch.where(frozen[:, None], fs[:, slot], fx)
        filled[:, slot] |= ~frozen
        iterations = iterations + (~frozen).long()
    # report the best of the stored iterates per sample (a sample frozen early never wrote the
    # later slots: their zeros are no iterate of its)
    absolute_all = (fs - xs).norm(dim=2).nan_to_num(nan=float("inf"))
    absolute_all = absolute_all.masked_fill(~filled, float("inf"))
    pick = absolute_all.argmin(dim=1)
    x = xs[torch.arange(batch), pick]
    fx = fn(x.reshape(shape)).reshape(batch, dim)
    absolute, relative = _residuals(fx, x)
    converged = _done(absolute, relative, abs_tol, rel_tol)
    return x.reshape(shape), SolveStats(iterations, absolute, relative, converged)


def solve(fn: Map, x0: torch.Tensor, solver: str, max_iter: int, abs_tol: float, rel_tol: float,
          **options) -> tuple[torch.Tensor, SolveStats]:
    if solver == "picard":
        return picard(fn, x0, max_iter, abs_tol, rel_tol, **options)
    if solver == "anderson":
        return anderson(fn, x0, max_iter, abs_tol, rel_tol, **options)
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def equilibrium_output(fn: Map, x0: torch.Tensor, *, solver: str = "anderson", max_iter: int = 30,
                       abs_tol: float = 1e-6, rel_tol: float = 1e-6, backward: str = "implicit",
                       phantom_steps: int = 5, phantom_damping: float = 0.5,
                       adjoint_iter: int | None = None) -> tuple[torch.Tensor, SolveStats]:
    """x* = fn(x*) with gradients by the chosen backward mode. Returns (x*, stats)."""
    if backward == "unrolled":
        x = x0
        for _ in range(max_iter):
            x = fn(x)
        with torch.no_grad():
            absolute, relative = _residuals(fn(x), x)
        iterations = torch.full((x.shape[0],), max_iter, dtype=torch.long, device=x.device)
        return x, SolveStats(iterations, absolute, relative, _done(absolute, relative, abs_tol, rel_tol))
    with torch.no_grad():
        x_star, stats = solve(fn, x0, solver, max_iter, abs_tol, rel_tol)
    if not torch.is_grad_enabled():
        return x_star, stats
    if backward == "phantom":
        x = x_star
        for _ in range(phantom_steps):
            x = (1 - phantom_damping) * x + phantom_damping * fn(x)
        return x, stats
    if backward != "implicit":
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    x = fn(x_star)  # attaches the graph to parameters and inputs at the fixed point
    anchor = x_star.detach().requires_grad_(True)
    image = fn(anchor)

    def adjoint(grad: torch.Tensor | None) -> torch.Tensor | None:
        if grad is None:  # an undefined gradient passes through unchanged
            return None

        def step(u: torch.Tensor) -> torch.Tensor:
            return torch.autograd.grad(image, anchor, u, retain_graph=True)[0] + grad

        with torch.enable_grad():
            u, _ = solve(step, grad, solver, adjoint_iter or max_iter, abs_tol, rel_tol)
        return u

    if x.requires_grad:
        x.register_hook(adjoint)
    return x, stats
