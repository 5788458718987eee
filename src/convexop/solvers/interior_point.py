"""The accurate reference of batched strongly convex QPs: a Mehrotra predictor-corrector interior-point
method (`interior_point`), finished by the active-set KKT polish of `qp.QPDual` (`solve_qp`), to relative
gap and violation <= tol; and `phase_one`, the strictly feasible points (or proofs of infeasibility) that
restore feasibility of amortised primal answers."""

from __future__ import annotations

import math

import torch

from .qp import QPData, QPDual, mv

__all__ = ["interior_point", "phase_one", "solve_qp"]

Tensor = torch.Tensor


def _scaled(r: Tensor, v: Tensor) -> Tensor:
    """max |r| / (1 + max |v|) per instance (0 for no rows)."""
    return r.abs().amax(-1) / (1 + v.abs().amax(-1)) if r.shape[-1] else r.new_zeros(r.shape[0])


def _newton(d: QPData, gw: Tensor, chol: Tensor, residuals: tuple[Tensor, Tensor, Tensor], s: Tensor, mu: Tensor,
            rc: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The interior-point Newton direction (dy, dlambda, ds, dmu) for complementarity target rc,
    through the condensed system (P + G'(mu/s)G) dy + A'dlambda = ..., A dy = -r_e."""
    rd, re, ri = residuals
    hr = torch.cholesky_solve((-rd - mv(gw.mT, (rc + mu * ri) / s))[..., None], chol)[..., 0]
    if d.me:
        ha = torch.cholesky_solve(d.A.mT.expand(len(s), -1, -1), chol)
        dl = torch.linalg.solve(d.A @ ha, mv(d.A, hr) + re)
        dy = hr - mv(ha, dl)
    else:
        dl, dy = hr[:, :0], hr
    ds = -ri - mv(gw, dy)
    return dy, dl, ds, (rc - mu * ds) / s


def _longest(s: Tensor, mu: Tensor, ds: Tensor, dm: Tensor) -> Tensor:
    """(k, 1) the longest step in [0, 1] keeping s, mu >= 0."""
    ratio = torch.cat([torch.where(ds < 0, -s / ds, torch.inf), torch.where(dm < 0, -mu / dm, torch.inf)], -1)
    return ratio.amin(-1, keepdim=True).clamp(max=1.0) if s.shape[-1] else s.new_ones(len(s), 1)


def interior_point(data: QPData, tol: float = 1e-10, max_iterations: int = 80,
                   patience: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    """Batched Mehrotra predictor-corrector IPM (float64). Returns y (B, n), z = [lambda, mu] (B, m) and
    the iterations per instance. An instance stops when its KKT error (max of the scaled primal and
    dual residuals and the mean complementarity) is <= tol or has not improved for 3 iterations
    (rounding floor); the iterate with the smallest error is returned."""
    data = data.to(torch.float64)
    batch, n, me, mi = data.batch, data.n, data.me, data.mi
    state = [torch.zeros(batch, n, dtype=torch.float64), torch.zeros(batch, me, dtype=torch.float64),
             torch.ones(batch, mi, dtype=torch.float64), torch.ones(batch, mi, dtype=torch.float64)]
    best = [t.clone() for t in state]
    best_error = torch.full((batch,), math.inf, dtype=torch.float64)
    stalled, iterations, work = (torch.zeros(batch, dtype=torch.int64), torch.zeros(batch, dtype=torch.int64),
                                 torch.arange(batch))
    for count in range(max_iterations + 1):
        d = data.index(work)
        yw, lw, sw, mw = (t[work] for t in state)
        rd = mv(d.P, yw) + d.q + mv(d.A.mT, lw) + mv(d.G.mT, mw)
        re, ri = mv(d.A, yw) - d.b, mv(d.G, yw) + sw - d.h
        comp = (sw * mw).mean(-1) if mi else torch.zeros(len(work), dtype=torch.float64)
        error = torch.stack([_scaled(rd, d.q), _scaled(re, d.b), _scaled(ri, d.h), comp]).amax(0).nan_to_num(math.inf)
        better = error < best_error[work]
        for kept, now in zip(best, (yw, lw, sw, mw)):
            kept[work[better]] = now[better]
        stalled[work] = torch.where(error < 0.5 * best_error[work], 0, stalled[work] + 1)
        best_error[work] = torch.minimum(error, best_error[work])
        keep = (best_error[work] > tol) & (stalled[work] < patience) & torch.isfinite(error)
        work, yw, lw, sw, mw, rd, re, ri, comp = (t[keep] for t in (work, yw, lw, sw, mw, rd, re, ri, comp))
        if len(work) == 0 or count == max_iterations:
            break
        d, gw = data.index(work), data.index(work).G.expand(len(work), -1, -1)
        iterations[work] += 1
        chol = torch.linalg.cholesky_ex(d.P + (gw.mT * (mw / sw)[:, None, :]) @ gw)[0]
        step = _newton(d, gw, chol, residuals := (rd, re, ri), sw, mw, -sw * mw)
        alpha = _longest(sw, mw, step[2], step[3])
        if mi:
            affine = ((sw + alpha * step[2]) * (mw + alpha * step[3])).mean(-1)
            sigma = (affine / comp.clamp_min(1e-300)).clamp(0, 1) ** 3
            step = _newton(d, gw, chol, residuals, sw, mw,
                           -sw * mw + sigma[:, None] * comp[:, None] - step[2] * step[3])
            alpha = (0.99 * _longest(sw, mw, step[2], step[3])).clamp(max=1.0)
        for t, now, delta in zip(state, (yw, lw, sw, mw), step):
            t[work] = now + alpha * delta
    return best[0], torch.cat([best[1], best[3]], dim=-1), iterations


def solve_qp(data: QPData, tol: float = 1e-9, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """Accurate batched solutions: the interior-point method, then the active-set polish with the
    interior-point active set, until the relative gap and the violation are <= tol. Returns
    y (B, n) and z (B, m) in float64 (instances the polish could not certify keep the IPM answer)."""
    data = data.to(torch.float64)
    ys, zs = [], []
    for start in range(0, data.batch, chunk):
        part = data.index(slice(start, start + chunk)) if data.batch > 1 else data
        y, z, _ = interior_point(part, tol=min(tol, 1e-10))
        dual = QPDual(part)
        if part.mi:  # one KKT solve on the interior-point active set, kept where it certifies better
            active = z[:, part.me:] > part.h - mv(part.G, y)
            exact = dual.kkt(active)
            better = torch.stack(dual.certificate(exact)).amax(0) < torch.stack(dual.certificate(z)).amax(0)
            z = torch.where(better[:, None], exact, z)
            result = dual.polish(z, tol, 50, active=dual.active_set_update(exact, active), fista_chunk=0)
            z = torch.where(result.converged[:, None], result.x, z)
        ys.append(dual.recover(z)[0])
        zs.append(z)
    return torch.cat(ys), torch.cat(zs)


def phase_one(data: QPData, tol: float = 1e-9) -> tuple[Tensor, Tensor]:
    """A strictly feasible point of each instance's constraints and its margin, batched.

    With rows normalised (G_i / |G_i|), solves the strongly convex QP in (y, t)
        min  -t + eps/2 (|y|^2 + t^2) / sigma^2   s.t.  A y = b,  G_i y / |G_i| + t <= h_i / |G_i|,  t <= sigma
    (sigma = 1 + max |b|, |h_i| / |G_i| per instance sets the scale, eps = 1e-6: the margin t is
    maximised, up to a regularisation that keeps the QP strongly convex and its solution bounded).
    Returns the points y (B, n) and margins (B,): the smallest distance min_i (h_i - G_i y) / |G_i|
    to an inequality's hyperplane, measured at y, or minus the equality residual max |A y - b| / (1 +
    max |b|) when that is larger: a positive margin makes y strictly feasible; a negative one
    (beyond rounding) means that no point satisfies the constraints. Where the solve did not reach its
    optimality conditions (dual residual and complementarity <= 1e-6) a negative margin proves
    nothing and is reported as 0."""
    data = data.to(torch.float64)
    batch, n, me, mi = data.batch, data.n, data.me, data.mi
    norms = data.G.norm(dim=-1).clamp_min(1e-300)  # (1|B, mi)
    g, h = data.G / norms[..., None], data.h / norms
    scale = torch.zeros(batch, dtype=g.dtype)  # sigma per instance
    if mi:
        scale = torch.maximum(scale, h.abs().amax(-1).expand(batch))
    if me:
        scale = torch.maximum(scale, data.b.abs().amax(-1).expand(batch))
    sigma = 1.0 + scale
    eye = torch.eye(n + 1, dtype=g.dtype)
    rows_g = torch.cat([g, torch.ones(*g.shape[:-1], 1, dtype=g.dtype)], -1).expand(batch, -1, -1)
    cap = eye[-1:].expand(batch, 1, -1)
    big_g = torch.cat([rows_g, cap], -2)
    big_h = torch.cat([h.expand(batch, -1), sigma[:, None]], -1)
    q = -eye[-1:]
    a = torch.cat([data.A, torch.zeros(*data.A.shape[:-1], 1, dtype=g.dtype)], -1)
    phase = QPData((1e-6 / sigma ** 2)[:, None, None] * eye, q, a, data.b, big_g, big_h)
    w, z, _ = interior_point(phase, tol=tol, max_iterations=200, patience=20)
    y = w[:, :n]
    slack, mu = big_h - mv(big_g, w), z[:, me:]
    dual_residual = mv(phase.P, w) + phase.q + mv(phase.A.mT, z[:, :me]) + mv(big_g.mT, mu)
    converged = torch.stack([_scaled(dual_residual, phase.q), (slack * mu).abs().amax(-1)]).amax(0) <= 1e-6
    margin = (h - mv(g, y)).amin(-1) if mi else torch.full((batch,), math.inf, dtype=y.dtype)
    if me:
        equality = (mv(data.A, y) - data.b).abs().amax(-1) / (1 + data.b.abs().amax(-1))
        margin = torch.where(equality > 1e-7, -equality, margin)
    return y, torch.where(converged, margin, margin.clamp_min(0.0))  # unproven negative margins: 0
