"""Batched FISTA / forward-backward splitting with a per-instance stop.

Solves min_x S(x) + h(x) (a `CompositeProgram`) for a batch of instances from given starts:

    x_{k+1} = prox_{t h}(y_k - t grad S(y_k)),   y_{k+1} = x_{k+1} + (tau_k - 1)/tau_{k+1} (x_{k+1} - x_k)

(Beck-Teboulle FISTA) with the gradient-based adaptive restart of O'Donoghue-Candes (momentum is
reset when <y_k - x_{k+1}, x_{k+1} - x_k> > 0), which recovers linear convergence on strongly
convex programs. Step: t = 1 / lipschitz where the program knows a bound; otherwise (S not globally
L-smooth) t starts at 1 and is halved per instance until the sufficient-decrease condition
S(x+) <= S(y) + <grad S(y), x+ - y> + ||x+ - y||^2 / (2 t) holds (backtracking; t never grows).

Each instance stops as soon as the program's certificate measure (`program.measure`) is <= tol and
is then frozen; `iterations` counts forward-backward steps (0 if the start already passes).
Finished instances are dropped from the working batch (`program.subset`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .program import CompositeProgram, SolveResult

__all__ = ["fista"]

Measure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (k, R), index (k,)) -> (k,)


def fista(program: CompositeProgram, x0: torch.Tensor, tol: float, max_iterations: int,
          max_backtracks: int = 60, measure: Measure | None = None) -> SolveResult:
    """Run FISTA from x0 (n, R) until the stopping measure <= tol per instance or max_iterations
    steps; the measure is program.measure unless `measure(x, index)` (k,) is given (e.g. the error
    against a known answer, for benchmarks at equal accuracy)."""
    n = x0.shape[0]
    device = x0.device
    x = x0.detach().clone()
    out_x = x.clone()
    out_residual = torch.full((n,), float("nan"), dtype=x.dtype, device=device)
    iterations = torch.zeros(n, dtype=torch.int64, device=device)
    converged = torch.zeros(n, dtype=torch.bool, device=device)
    index = torch.arange(n, device=device)
    whole = program

    def stopping(program: CompositeProgram, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return program.measure(x) if measure is None else measure(x, index)

    residual = stopping(program, x, index)
    y = x.clone()
    momentum = torch.ones(len(index), 1, dtype=x.dtype, device=device)
    step = program.step(x)
    for iteration in range(max_iterations + 1):
        done = residual <= tol
        out_x[index] = x
        out_residual[index] = residual
        converged[index] = done
        if done.any():
            keep = ~done
            index, x, y, momentum, step = index[keep], x[keep], y[keep], momentum[keep], step[keep]
            if len(index) == 0:
                break
            program = whole.subset(index)
        if iteration == max_iterations:
            break
        value, gradient = program.value_and_gradient(y)
        new = program.forward_backward(y, step, gradient)
        if program.lipschitz is None:
            for _ in range(max_backtracks):
                with torch.no_grad():
                    change = new - y
                    bound = value + (gradient * change).sum(-1) + (change * change).sum(-1) / (2 * step[:, 0])
                    trial = program.smooth(new)
                    bad = ~(trial <= bound + 1e-12 * value.abs())  # NaN/inf count as failures
                if not bad.any():
                    break
                step = torch.where(bad[:, None], step / 2, step)
                new = torch.where(bad[:, None], program.forward_backward(y, step, gradient), new)
        restart = ((y - new) * (new - x)).sum(-1, keepdim=True) > 0
        next_momentum = (1 + torch.sqrt(1 + 4 * momentum**2)) / 2
        y = torch.where(restart, new, new + (momentum - 1) / next_momentum * (new - x))
        momentum = torch.where(restart, torch.ones_like(momentum), next_momentum)
        x = new
        iterations[index] += 1
        residual = stopping(program, x, index)
    return SolveResult(out_x, out_residual, iterations, converged)
