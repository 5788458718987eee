"""Active-set Newton polish for min_x S(x) + h(x) when h is separable and piecewise simple.

Supported h (a `Prox`, or a `SeparableSum` of them over blocks): Zero, Box / NonNegative, L1 and
Simplex. From a candidate x (e.g. a model's answer) one round

1. takes the forward-backward point p = prox_{t h}(x - t grad S(x)) and reads the active set off it:
   coordinates at a bound of a box, zeros of an L1 block or of a simplex block (fixed there), the
   rest free; on free L1 coordinates h contributes the constant gradient weight * sign(p);
2. solves the Newton system of S on the free coordinates, with one equality row sum(x_F) = total per
   simplex block (a batched KKT solve), the Hessian of S from central differences of its gradient
   (exact up to rounding for quadratic S; 2R gradient evaluations);
3. accepts the new point where the certificate (the prox-gradient residual) drops below tol.

With the right active set a quadratic program is solved in one round; the rounds repeat with the
refreshed active set, and instances still above tol after `rounds` continue with warm-started FISTA
(fista.py) from their best point. A round that does not lower the certificate
is followed by `restart_steps` forward-backward steps from the best point (a cheap globalisation against cycling
active sets). `iterations` counts Newton rounds, those steps and the FISTA steps; a round costs
2R + 1 gradient evaluations and one (R + k)-sized solve, which the
benchmarks report next to the count.
"""

from __future__ import annotations

import torch

from ..prox import L1, Box, Prox, SeparableSum, Simplex, Zero
from .fista import fista
from .program import FINISH_FRACTION, CompositeProgram, SolveResult

__all__ = ["active_set_newton", "newton_supported"]

_KINDS = (Zero, Box, L1, Simplex)


def _blocks(h: Prox | None, size: int) -> list[tuple[int, int, Prox]]:
    if h is None:
        return [(0, size, Zero())]
    if isinstance(h, SeparableSum):
        out, start = [], 0
        for width, part in zip(h.sizes, h.parts):
            out.append((start, start + width, part))
            start += width
        return out
    return [(0, size, h)]


def newton_supported(h: Prox | None) -> bool:
    parts = h.parts if isinstance(h, SeparableSum) else [h]
    return all(part is None or isinstance(part, _KINDS) for part in parts)


def _hessian(program: CompositeProgram, x: torch.Tensor) -> torch.Tensor:
    """(B, R, R) central-difference Hessian of the smooth part, symmetrised."""
    _batch, size = x.shape
    h = 1e-5 * x.abs().amax(-1).clamp_min(1.0)[:, None, None]
    eye = torch.eye(size, dtype=x.dtype, device=x.device)[None] * h
    points = torch.cat([x[:, None] + eye, x[:, None] - eye], dim=1)  # (B, 2R, R)
    with torch.enable_grad():
        points = points.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(program.smooth(points).sum(), points)
    hessian = (gradient[:, :size] - gradient[:, size:]) / (2 * h)
    return (hessian + hessian.mT) / 2


def _newton_round(program: CompositeProgram, x: torch.Tensor) -> torch.Tensor:
    """One active-set Newton step from x (B, R), with the program's closed-form Hessian where it has one."""
    batch, size = x.shape
    step = program.step(x)
    _, gradient = program.value_and_gradient(x)
    p = program.prox(x - step * gradient, step)
    free = torch.ones_like(x, dtype=torch.bool)
    fixed = x.clone()
    linear = torch.zeros_like(x)
    rows = []
    for start, stop, part in _blocks(program.nonsmooth, size):
        block = slice(start, stop)
        pb = p[:, block]
        if isinstance(part, Box):
            lower, upper = part.lower.to(x).expand_as(pb), part.upper.to(x).expand_as(pb)
            at_bound = (pb <= lower) | (pb >= upper)
            free[:, block] = ~at_bound
            fixed[:, block] = torch.where(at_bound, pb, x[:, block])
        elif isinstance(part, (L1, Simplex)):
            zero = pb == 0
            free[:, block] = ~zero
            fixed[:, block] = torch.where(zero, torch.zeros_like(pb), x[:, block])
            if isinstance(part, L1):
                linear[:, block] = part.weight * torch.sign(pb)
            else:
                row = torch.zeros_like(x)
                row[:, block] = (~zero).to(x.dtype)
                rows.append((row, part.total))
    hessian = _hessian(program, x) if program.hessian is None else program.hessian(x)
    move = torch.where(free, torch.zeros_like(x), fixed - x)  # active coordinates jump to their values
    rhs = -(gradient + linear + (hessian @ move[..., None])[..., 0])
    eye = torch.eye(size, dtype=x.dtype, device=x.device)
    both = free[:, :, None] & free[:, None, :]
    matrix = torch.where(both, hessian, eye.expand_as(hessian) * (~free[:, :, None]).to(x.dtype))  # fixed: d = 0
    rhs = torch.where(free, rhs, torch.zeros_like(rhs))
    if rows:
        k = len(rows)
        c = torch.stack([r for r, _ in rows], dim=1)  # (B, k, R)
        target = torch.stack([torch.full_like(x[:, 0], t) for _, t in rows], dim=1)
        residual = target - (c * (x + move)[:, None, :]).sum(-1)
        top = torch.cat([matrix, c.mT], dim=2)
        bottom = torch.cat([c, torch.zeros(batch, k, k, dtype=x.dtype, device=x.device)], dim=2)
        system = torch.cat([top, bottom], dim=1)
        empty = c.sum(-1) == 0  # a simplex block with no free coordinate: drop its row
        system[:, size:, size:] += torch.diag_embed(empty.to(x.dtype))
        solution = _solve(system, torch.cat([rhs, torch.where(empty, 0, residual)], 1)[..., None])
        direction = solution[:, :size, 0]
    else:
        direction = _solve(matrix, rhs[..., None])[..., 0]
    return x + move + torch.where(free, direction, torch.zeros_like(direction))


def _solve(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Batched solve by LU (bit-reproducible from call to call, unlike LAPACK's gelsy least squares),
    with least squares only for the singular systems."""
    solution, info = torch.linalg.solve_ex(matrix, rhs)
    singular = (info != 0) | ~torch.isfinite(solution).flatten(1).all(-1)
    if singular.any():
        solution = solution.clone()
        solution[singular] = torch.linalg.lstsq(matrix[singular], rhs[singular]).solution
    return solution


def _line_search(program: CompositeProgram, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The best point of the segment x -> target (by the objective S + h) among the full step and
    the points where a coordinate crosses zero or a box bound (snapped exactly onto it), feature-
    sign-search style: a wrong sign or bound in the Newton system costs a shorter step, not a cycle."""
    d = target - x
    size = x.shape[1]
    ratios = [torch.ones_like(x[:, :1])]
    breaks = [torch.zeros_like(x[:, :1])]  # crossing values: zero, or the bound crossed
    for start, stop, part in _blocks(program.nonsmooth, size):
        block = slice(start, stop)
        xb, db = x[:, block], d[:, block]
        if isinstance(part, (L1, Simplex)):
            crossing = (xb * (xb + db) < 0) | ((xb != 0) & (xb + db == 0))
            alpha = torch.where(crossing, -xb / torch.where(db == 0, torch.ones_like(db), db), torch.full_like(xb, 2.0))
            ratio = torch.full_like(x, 2.0)
            ratio[:, block] = alpha
            ratios.append(ratio)
            breaks.append(torch.zeros_like(x))
        elif isinstance(part, Box):
            for bound in (part.lower, part.upper):
                value = bound.to(x).expand_as(xb)
                leaving = ((xb - value) * (xb + db - value) < 0) & torch.isfinite(value)
                alpha = torch.where(leaving, (value - xb) / torch.where(db == 0, torch.ones_like(db), db),
                                    torch.full_like(xb, 2.0))
                ratio, at = torch.full_like(x, 2.0), torch.zeros_like(x)
                ratio[:, block], at[:, block] = alpha, torch.where(torch.isfinite(value), value, 0.0)
                ratios.append(ratio)
                breaks.append(at)
    alpha = torch.cat(ratios, dim=1)  # (B, K): 1 and every crossing ratio (2 = none)
    snap_value = torch.cat(breaks, dim=1)
    candidates = x[:, None] + alpha.clamp(max=1.0)[..., None] * d[:, None]  # (B, K, R)
    k = alpha.shape[1]
    coordinate = torch.cat([torch.full((1,), -1, dtype=torch.long),
                            torch.arange(k - 1, dtype=torch.long) % size]).to(x.device)
    snap = (coordinate[None, :, None] == torch.arange(size, device=x.device)[None, None, :]) & (alpha[..., None] <= 1)
    candidates = torch.where(snap, snap_value[:, :, None].expand(-1, -1, size).gather(
        1, torch.arange(k, device=x.device)[None, :, None].expand(x.shape[0], -1, size)), candidates)
    with torch.no_grad():
        smooth = program.smooth(candidates)  # (B, K)
        nonsmooth = program.nonsmooth.value(candidates) if program.nonsmooth is not None else 0.0
        value = torch.where(alpha <= 1, smooth + nonsmooth, torch.full_like(smooth, float("inf")))
    best = value.nan_to_num(nan=float("inf")).argmin(dim=1)
    return candidates[torch.arange(x.shape[0], device=x.device), best]


def active_set_newton(program: CompositeProgram, x0: torch.Tensor, tol: float, max_iterations: int,
                      rounds: int = 8, restart_steps: int = 1, finish: bool = True) -> SolveResult:
    """Polish x0 (n, R) until program.measure <= tol: active-set Newton rounds, then FISTA (module doc).
    finish: every instance that ends at FINISH_FRACTION * tol < measure <= tol with budget left gets one
    more round (counted), kept where it lowers the measure: a residual <= tol, reached before any round
    or after a line-searched partial step, leaves the point ~condition x tol from the minimiser; a full
    round on the right active set lands on it, exactly for a quadratic."""
    n = x0.shape[0]
    x = x0.detach().clone()
    residual = program.measure(x)
    iterations = torch.zeros(n, dtype=torch.int64, device=x.device)
    current = x.clone()  # the rounds move on even when a round is worse (its active set is new)
    for _ in range(min(rounds, max_iterations)):
        work = (residual > tol).nonzero()[:, 0]
        if len(work) == 0:
            break
        sub = program.subset(work)
        trial = program_safe(lambda prog, z: _line_search(prog, z, _newton_round(prog, z)), sub, current[work])
        trial_residual = sub.measure(trial)
        better = trial_residual < residual[work]  # x keeps the best point (NaN never better)
        x[work[better]] = trial[better]
        residual[work[better]] = trial_residual[better]
        # a round that did not improve restarts from one forward-backward step of the best point
        restart = x[work]
        for _ in range(0 if bool(better.all()) else restart_steps):
            restart = sub.forward_backward(restart, sub.step(restart))
        current[work] = torch.where(better[:, None], trial, restart)
        iterations[work] += 1 + restart_steps * (~better).long()
    left = max_iterations - int(iterations.max()) if n else 0
    work = (residual > tol).nonzero()[:, 0]
    if len(work) and left > 0:
        result = fista(program.subset(work), x[work], tol, left)
        x[work], residual[work] = result.x, result.residual
        iterations[work] += result.iterations
    done = ((residual <= tol) & (residual > FINISH_FRACTION * tol) & (iterations < max_iterations)).nonzero()[:, 0]
    if finish and len(done):
        sub = program.subset(done)
        trial = program_safe(lambda prog, z: _line_search(prog, z, _newton_round(prog, z)), sub, x[done])
        trial_residual = sub.measure(trial)
        better = trial_residual < residual[done]
        x[done[better]], residual[done[better]] = trial[better], trial_residual[better]
        iterations[done] += 1
    return SolveResult(x, residual, iterations, residual <= tol)


def program_safe(step, program: CompositeProgram, x: torch.Tensor) -> torch.Tensor:
    """step(program, x), with failed solves (singular systems) returning x unchanged."""
    try:
        out = step(program, x)
    except torch.linalg.LinAlgError:  # singular batches
        return x
    return torch.where(torch.isfinite(out).all(-1, keepdim=True), out, x)
