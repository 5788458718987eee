"""Batched strongly convex QPs through their Lagrangian dual, certificates, active-set polish, reference.

    primal:  min_y 1/2 y'Py + q'y   s.t.  A y = b (me rows),  G y <= h (mi rows),   P positive definite
    dual:    min_z g(z) = 1/2 r'P^-1 r + b'lambda + h'mu,  r = q + K'z,  K = [A; G],  z = [lambda; mu],
             s.t. mu >= 0        (g is the negated dual function; it is 1/2 z'Mz + c'z + const with
             M = K P^-1 K', c = K P^-1 q + [b; h]); the Lagrangian minimiser is y(z) = -P^-1 r.
Every array has leading batch 1 (shared by all instances, never expanded) or B.

Certificates (what families report). A dual candidate z (mu >= 0) is turned into a primal answer in
closed form by `recover`: mu is kept, lambda is replaced by its best value for that mu (one solve with
the factored M_EE), y_eq = y(lambda~, mu) then satisfies A y = b exactly, and when a strictly
feasible `interior` point is known, y = interior + t (y_eq - interior) with the largest t in [0, 1]
keeping G y <= h (a ratio test; y is then feasible). The certificate of z is the pair
    gap       = (f(y) - d(z~)) / max(1, |f(y)|)     (relative duality gap; d(z~) <= f* by weak duality)
    violation = max(||Ay - b||_inf, max(Gy - h)_+, max(-mu)_+)   (absolute),
and z is *certified at tol* when both are <= tol. For a feasible y, 0 <= f(y) - f* <= gap * scale: the
gap bounds the suboptimality of the answer itself, relative to the objective's size (as OSQP's and
Clarabel's relative tolerances; the 1 keeps objectives near 0 on an absolute scale). The raw dual
recovery y(z) is kept (`primal`, `duality_gap`) but not used for answers: on ill-conditioned duals
its equality residual is the dual gradient, ~lambda_max(M) times the error of z.
Polish (`QPDual.polish`, OSQP-style solution polishing): guess the active inequalities from z, solve
the equality-constrained QP they imply (lambda eliminated: a masked mi x mi system in the reduced
Hessian, one batched Cholesky solve and a refinement step), accept where certified; otherwise update
the guess by the primal-dual active-set rule (Hintermueller-Ito-Kunisch: drop negative multipliers,
add violated constraints) for up to `rounds` solves, then alternate warm-started FISTA on `program()`
with a new guess. An answer certified before any solve still gets one KKT solve on its guess (kept
where it certifies better: exact to rounding instead of merely within the gap). `iterations` = KKT
solves + FISTA steps; `first_guess` flags the instances the first solve certified (or that were
certified before any solve).
Reference (`interior_point.solve_qp`): a batched Mehrotra predictor-corrector interior-point method, finished by the
polish above (active set read off the interior-point solution), to gap and violation <= tol.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from .fista import fista
from .program import FINISH_FRACTION, SolveResult
from .qp_program import QPDualProgram

__all__ = ["QPData", "QPDual", "QPPolishResult", "decoupled_coordinates", "mv", "relative_gap"]

Tensor = torch.Tensor
RESTORE_THRESHOLD = 1e-10  # violations above this (relative to 1 + max|h|) are restored when asked
INFEASIBLE_MARGIN = 1e-7  # a phase-I margin below -this (relative row distance) proves infeasibility


def mv(matrix: Tensor, vector: Tensor) -> Tensor:
    """(1|B, r, c) @ (B, c) -> (B, r); a shared matrix is one (B, c) x (c, r) product, not B matvecs."""
    if matrix.dim() == 3 and matrix.shape[0] == 1 and vector.dim() == 2:
        return vector @ matrix[0].mT
    return (matrix @ vector[..., None])[..., 0]


@dataclass
class QPData:
    P: Tensor  # (1|B, n, n) symmetric positive definite
    q: Tensor  # (1|B, n)
    A: Tensor  # (1|B, me, n)
    b: Tensor  # (1|B, me)
    G: Tensor  # (1|B, mi, n)
    h: Tensor  # (1|B, mi)

    @property
    def batch(self) -> int:
        return max(getattr(self, f.name).shape[0] for f in fields(self))

    n = property(lambda self: self.P.shape[-1], doc="number of variables")
    me = property(lambda self: self.A.shape[-2], doc="number of equality constraints")
    mi = property(lambda self: self.G.shape[-2], doc="number of inequality constraints")

    def index(self, i) -> QPData:
        """The instances i (an index tensor or slice); shared arrays stay shared."""
        return QPData(*(t if t.shape[0] == 1 else t[i] for t in (getattr(self, f.name) for f in fields(self))))

    def to(self, dtype: torch.dtype) -> QPData:
        return QPData(*(getattr(self, f.name).to(dtype) for f in fields(self)))

    def check(self) -> None:
        """Raise ValueError on inconsistent shapes, batch sizes or a P that is not positive definite."""
        n, me, mi = self.n, self.me, self.mi
        expected = {"P": (n, n), "q": (n,), "A": (me, n), "b": (me,), "G": (mi, n), "h": (mi,)}
        for name, shape in expected.items():
            t = getattr(self, name)
            if tuple(t.shape[1:]) != shape or t.shape[0] not in (1, self.batch):
                raise ValueError(f"QP {name} must have shape (1 or {self.batch}, {', '.join(map(str, shape))}), "
                                 f"got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"QP {name} has non-finite entries")
        if not torch.allclose(self.P, self.P.mT, atol=1e-10 * (1 + self.P.abs().max().item())):
            raise ValueError("QP P must be symmetric")
        if (torch.linalg.cholesky_ex(self.P.double()).info != 0).any():
            raise ValueError("QP P must be positive definite (the dual route needs a strongly convex objective)")


def decoupled_coordinates(m: Tensor, me: int) -> Tensor:
    """E (m x m) with z = E c that conditions the dual program 1/2 z'Mz + ...: E'ME = diag(I, DHD),
    E = [[S^-1/2, -S^-1 R D], [0, D]] with S = M_EE, R = M_EI, H = M_II - R'S^-1 R the Hessian in mu
    alone (lambda eliminated) and D the diagonal scaling of H to unit diagonal, then unit largest
    eigenvalue. The lambda block is decoupled (one unit gradient step solves it), the mu block has
    H's conditioning improved by Jacobi scaling, and E maps mu >= 0 to c_mu >= 0 (D is a positive
    diagonal), so the activation stays a clamp. M (m x m) symmetric positive definite, float64."""
    m = m.double()
    s, r = m[:me, :me], m[:me, me:]
    values, vectors = torch.linalg.eigh(s)
    solved = torch.linalg.solve(s, r) if me else r
    reduced = m[me:, me:] - r.T @ solved
    d = reduced.diagonal().clamp_min(1e-300).rsqrt()
    if len(d):
        d = d / torch.linalg.eigvalsh(d[:, None] * reduced * d[None, :])[-1].sqrt()
    out = torch.zeros_like(m)
    out[:me, :me] = (vectors / values.sqrt()) @ vectors.T
    out[:me, me:] = -solved * d[None, :]
    out[me:, me:] = torch.diag(d)
    return out


def relative_gap(gap: Tensor, objective: Tensor) -> Tensor:
    """|gap| / max(1, |objective|): the gap scale used by every certificate here."""
    return gap.abs() / objective.abs().clamp_min(1.0)


@dataclass
class QPPolishResult(SolveResult):
    violation: Tensor | None = None  # (n,) certificate violation at x
    first_guess: Tensor | None = None  # (n,) bool: certified by the first KKT solve
    kkt_solves: Tensor | None = None  # (n,) int64
    fista_steps: Tensor | None = None  # (n,) int64


class QPDual:
    """The Lagrangian dual as an in-basis program over z = [lambda (me), mu (mi)]:
    minimise g(z) = 1/2 r' P^-1 r + b'lambda + h'mu,  r = q + A'lambda + G'mu,   s.t. mu >= 0
    (the negated dual function), primal recovery y(z) = -P^-1 r."""

    def __init__(self, data: QPData, factors: dict[str, Tensor] | None = None,
                 restore: Callable[[QPData], tuple[Tensor, Tensor]] | None = None) -> None:
        self.data = data
        self.factors = factors if factors is not None else QPDual.factor(data)
        self.me, self.mi, self.m = data.me, data.mi, data.me + data.mi
        rows = max(data.b.shape[0], data.h.shape[0])
        self.linear = self.factors["kpq"] + torch.cat([data.b.expand(rows, -1), data.h.expand(rows, -1)], -1)
        # automatic feasibility restoration (`recover(..., restore=True)`): restore(data) -> (strictly
        # feasible points (B, n), margins (B,)) of a phase-I solve, computed once per instance on demand
        # and shared with subsets (`_rows` index the batch the cache was made for)
        self.restore = restore
        self._rows = torch.arange(data.batch)
        self._feasible = {"point": torch.full((data.batch, data.n), math.nan, dtype=torch.float64),
                          "margin": torch.full((data.batch,), math.nan, dtype=torch.float64)}

    @staticmethod
    def factor(data: QPData) -> dict[str, Tensor]:
        """The b- and h-independent factorisations (reuse them across right-hand sides)."""
        data.check()
        chol = torch.linalg.cholesky(data.P)
        k = torch.cat([data.A, data.G], dim=-2)
        pinv_kt = torch.cholesky_solve(k.mT, chol)  # P^-1 K'
        pinv_q = torch.cholesky_solve(data.q[..., None], chol)[..., 0]
        m = k @ pinv_kt
        m = (m + m.mT) / 2
        me = data.me
        eq_pinv = torch.linalg.pinv(m[..., :me, :me], hermitian=True)
        coupling = eq_pinv @ m[..., :me, me:]  # M_EE^-1 M_EI
        reduced = m[..., me:, me:] - m[..., me:, :me] @ coupling  # the Hessian of the dual in mu alone
        return {"pinv_kt": pinv_kt, "pinv_q": pinv_q, "M": m, "kpq": mv(k, pinv_q),
                "const": 0.5 * (data.q * pinv_q).sum(-1), "eq_pinv": eq_pinv, "coupling": coupling,
                "reduced": (reduced + reduced.mT) / 2,
                "lipschitz": torch.linalg.eigvalsh(m)[..., -1] if data.me + data.mi else m.new_zeros(m.shape[0])}

    # ----- the dual program ----------------------------------------------------------------
    def smooth(self, z: Tensor, constant: bool = True) -> Tensor:
        """g(z): (B, m) -> (B,) or (B, M, m) -> (B, M); differentiable. constant=False leaves out
        1/2 q'P^-1 q (the same minimiser; low-precision callers keep more digits of what varies)."""
        m, c = self.factors["M"].to(z), self.linear.to(z)
        const = self.factors["const"].to(z) if constant else torch.zeros_like(self.factors["const"]).to(z)
        if z.dim() == 2:
            return 0.5 * (mv(m, z) * z).sum(-1) + (c * z).sum(-1) + const
        quad = 0.5 * ((z @ m) * z).sum(-1)
        return quad + torch.einsum("bkm,bm->bk", z, c.expand(z.shape[0], -1)) + const[..., None]

    def primal(self, z: Tensor) -> Tensor:
        """y(z) = -P^-1 (q + K'z), (B, n)."""
        f = self.factors
        return -f["pinv_q"].to(z) - mv(f["pinv_kt"].to(z), z)

    def program(self, interior: Tensor | None = None, coordinates: Tensor | None = None,
                inverse: Tensor | None = None, lipschitz: Tensor | None = None,
                objective: Callable[[Tensor], Tensor] | None = None, slack_weight: float = 0.0,
                restore: bool = True) -> QPDualProgram:
        """The dual as an in-basis program over coefficients x with z = x @ coordinates.T
        (coordinates (m, m): identity by default; it must map the orthant mu >= 0 onto itself, e.g. a
        positive diagonal scaling per block, so that h stays the indicator of x_mu >= 0); `inverse`
        maps z back (x = z @ inverse.T); `lipschitz` (batch,) bounds grad g in x (default:
        lambda_max(M) for the identity); `objective` maps the primal objective (batch,) to the
        family's (e.g. a sign and a constant); `slack_weight` tunes the polish's first active-set guess
        (`active_guess`). Its certificate: see `QPDualProgram`."""
        if lipschitz is None:
            lipschitz = self.factors["lipschitz"].expand(self.data.batch).clamp_min(1e-12)
        return QPDualProgram(self, interior, coordinates, inverse, lipschitz, objective, slack_weight, restore)

    def primal_objective(self, y: Tensor) -> Tensor:
        d = self.data
        return 0.5 * (mv(d.P.to(y), y) * y).sum(-1) + (d.q.to(y) * y).sum(-1)

    def dual_objective(self, z: Tensor) -> Tensor:
        return -self.smooth(z)

    def duality_gap(self, z: Tensor) -> Tensor:
        """f(y(z)) - d(z) (signed; >= 0 up to rounding when y(z) is feasible and mu >= 0)."""
        return self.primal_objective(self.primal(z)) - self.dual_objective(z)

    def primal_violation(self, y: Tensor) -> Tensor:
        d = self.data
        out = y.new_zeros(y.shape[0])
        if self.me:
            out = torch.maximum(out, (mv(d.A.to(y), y) - d.b.to(y)).abs().amax(-1))
        if self.mi:
            out = torch.maximum(out, (mv(d.G.to(y), y) - d.h.to(y)).clamp_min(0).amax(-1))
        return out

    # ----- certificates --------------------------------------------------------------------
    def feasible_points(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """(points (k, n), margins (k,)) of the phase-I solve (`restore`) for the instances `rows`
        (indices into this batch), solved once per instance and cached."""
        key = self._rows[rows]
        missing = torch.isnan(self._feasible["margin"][key])
        if missing.any():
            point, margin = self.restore(self.data.index(rows[missing]))
            self._feasible["point"][key[missing]] = point.double()
            self._feasible["margin"][key[missing]] = margin.double()
        return self._feasible["point"][key], self._feasible["margin"][key]

    def infeasible(self) -> Tensor:
        """(B,) bool: the phase-I solve proved the instance infeasible (its largest margin is negative
        beyond rounding); False where it has not run (answers that were feasible never need it)."""
        margin = self._feasible["margin"][self._rows]
        return margin < -INFEASIBLE_MARGIN

    def recover(self, z: Tensor, interior: Tensor | None = None, restore: bool = False) -> tuple[Tensor, Tensor]:
        """(y, z~): the closed-form primal answer of z and the multipliers certifying it (module doc).
        restore: with no `interior`, answers that violate G y <= h are pulled into the feasible set
        along the segment to the phase-I point of their instance (`feasible_points`)."""
        z = self.best_lambda(z[..., self.me:])
        y = self.primal(z)
        if interior is None and restore and self.restore is not None and self.mi and len(y) == self.data.batch:
            d = self.data
            excess = (mv(d.G.to(y), y) - d.h.to(y)).amax(-1)
            bad = (excess > RESTORE_THRESHOLD * (1 + d.h.to(y).abs().amax(-1))).nonzero()[:, 0]
            if len(bad):
                points = self.feasible_points(bad)[0].to(y)
                y = y.clone()
                y[bad] = self.subset(bad).recover(z[bad], points)[0]
            return y, z
        if interior is not None and self.mi:
            g = self.data.G.to(y)
            step = mv(g, y - interior)
            room = (self.data.h.to(y) - mv(g, interior)).clamp_min(0)
            ratio = torch.where(step > 0, room / step.clamp_min(1e-300), torch.full_like(step, math.inf))
            t = ratio.amin(-1, keepdim=True).clamp(max=1.0)
            y = interior + t * (y - interior)
        return y, z

    def best_lambda(self, mu: Tensor) -> Tensor:
        """z = [lambda~(mu), mu] with lambda~ = argmin_lambda g(lambda, mu) = -M_EE^-1 (c_E + M_EI mu)."""
        if not self.me:
            return mu
        f = self.factors
        lam = -mv(f["eq_pinv"].to(mu), self.linear[..., :self.me].to(mu)) - mv(f["coupling"].to(mu), mu)
        return torch.cat([lam.expand(mu.shape[0], -1), mu], dim=-1)

    def certificate(self, z: Tensor, interior: Tensor | None = None, restore: bool = False) -> tuple[Tensor, Tensor]:
        """(relative gap, violation) of the recovered pair, both (B,)."""
        return self.assess(*self.recover(z, interior, restore))[:2]

    def assess(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(relative gap, violation, primal objective) of a recovered pair (y, z~), each (B,)."""
        objective = self.primal_objective(y)
        gap = relative_gap(objective - self.dual_objective(z), objective)
        violation = self.primal_violation(y)
        if self.mi:
            violation = torch.maximum(violation, (-z[..., self.me:]).clamp_min(0).amax(-1))
        return gap, violation, objective

    # ----- polish ------------------------------------------------------------------------
    def active_guess(self, z: Tensor, slack_weight: float = 0.0) -> Tensor:
        """(B, mi) bool: mu_i - slack_weight * (h - G y_eq)_i > 0 (slack_weight 0: mu_i > 0)."""
        mu = z[..., self.me:]
        if slack_weight == 0:
            return mu > 0
        y, _ = self.recover(z)
        slack = self.data.h.to(y) - mv(self.data.G.to(y), y)
        return mu - slack_weight * slack > 0

    def active_set_update(self, z: Tensor, previous: Tensor) -> Tensor:
        """The primal-dual active-set rule after the KKT solve z of the set `previous`: an active
        constraint stays when mu_i > 0, an inactive one enters when G_i y(z) > h_i."""
        y = self.primal(z)
        return torch.where(previous, z[:, self.me:] > 0, mv(self.data.G.to(y), y) > self.data.h.to(y))

    def kkt(self, active: Tensor) -> Tensor:
        """z solving the equality-constrained QP with the inequalities `active` (B, mi) held tight:
        lambda is eliminated (the reduced Hessian H = M_II - M_IE M_EE^-1 M_EI is factored once), so
        each instance solves H_SS mu_S = -c~_S (masked to mi x mi; Cholesky, one refinement step),
        then lambda = lambda~(mu)."""
        f, me = self.factors, self.me
        if not self.mi:
            return self.best_lambda(self.linear.new_zeros(active.shape[0], 0))
        reduced_linear = self.linear[..., me:] - mv(f["coupling"].mT, self.linear[..., :me])
        mask = active.to(self.linear.dtype)
        system = f["reduced"].expand(len(mask), -1, -1) * (mask[:, :, None] * mask[:, None, :])
        system.diagonal(dim1=-2, dim2=-1).add_(1 - mask)
        rhs = -(mask * reduced_linear)[..., None]
        chol, info = torch.linalg.cholesky_ex(system)

        def solve(r: Tensor) -> Tensor:
            inner = torch.linalg.solve_triangular(chol, r, upper=False)
            return torch.linalg.solve_triangular(chol.mT, inner, upper=True)

        mu = solve(rhs)
        mu = mu - solve(system @ mu - rhs)  # one step of iterative refinement
        if (info != 0).any():  # dependent active constraints: least squares on those instances
            bad = info != 0
            mu[bad] = torch.linalg.lstsq(system[bad], rhs[bad], driver="gelsd").solution
        return self.best_lambda(mu[..., 0])

    def polish(self, z: Tensor, tol: float, max_iterations: int, interior: Tensor | None = None,
               active: Tensor | None = None, slack_weight: float = 0.0, rounds: int = 12,
               fista_chunk: int = 500, finish: bool = True) -> QPPolishResult:
        """Certify z (B, m) to tol by active-set KKT solves with FISTA fallback (module doc); with
        `finish`, an instance certified before any solve still gets one KKT solve on its active guess,
        kept where it certifies with a smaller gap + violation (a gap <= tol alone leaves the answer up
        to ~sqrt(tol) away from the optimum on flat directions; the KKT point is exact to rounding)."""
        z = z.detach().to(self.linear.dtype).clone()
        if self.data.batch != z.shape[0]:  # one QP polished from several starts
            b, h = self.data.b.expand(z.shape[0], -1), self.data.h.expand(z.shape[0], -1)
            data = QPData(self.data.P, self.data.q, self.data.A, b, self.data.G, h)
            return QPDual(data, self.factors).polish(z, tol, max_iterations, interior, active, slack_weight,
                                                     rounds, fista_chunk, finish)
        if self.mi:
            z[:, self.me:] = z[:, self.me:].clamp_min(0)
        gap, violation = self.certificate(z, interior)
        done = (gap <= tol) & (violation <= tol)
        kkt_solves, fista_steps = torch.zeros(len(z), dtype=torch.int64), torch.zeros(len(z), dtype=torch.int64)
        first = done.clone()  # certified with no solve counts as accepted
        guess = self.active_guess(z, slack_weight) if active is None else active.clone()
        rough = done & (torch.maximum(gap, violation) > FINISH_FRACTION * tol)
        if finish and rough.any() and max_iterations > 0:  # certified already: one KKT solve on its active set
            work = rough.nonzero()[:, 0]
            sub = self.subset(work)
            new = sub.best_lambda(sub.kkt(guess[work])[:, self.me:].clamp_min(0))
            ok_gap, ok_violation = sub.certificate(new, None if interior is None else interior[work])
            take = (ok_gap <= tol) & (ok_violation <= tol) & (ok_gap + ok_violation < gap[work] + violation[work])
            z[work[take]] = new[take]
            gap[work[take]], violation[work[take]] = ok_gap[take], ok_violation[take]
            kkt_solves[work] += 1
        budget, since_fista = max_iterations, 0
        while budget > 0 and not done.all():
            work = (~done).nonzero()[:, 0]
            sub = self.subset(work)
            inner = None if interior is None else interior[work]
            if since_fista < rounds or fista_chunk == 0:
                raw = sub.kkt(guess[work])
                guess[work] = sub.active_set_update(raw, guess[work])
                new = sub.best_lambda(raw[:, self.me:].clamp_min(0))  # certify dual-feasible multipliers only
                ok_gap, ok_violation = sub.certificate(new, inner)
                ok = (ok_gap <= tol) & (ok_violation <= tol)
                kkt_solves[work] += 1
                if budget == max_iterations:
                    first[work] = ok
                take = ok | (ok_gap + ok_violation < gap[work] + violation[work])
                budget, since_fista = budget - 1, since_fista + 1
            else:
                steps = min(fista_chunk, budget)
                result = fista(sub.program(inner, restore=False), z[work], tol, steps)
                new = result.x
                fista_steps[work] += result.iterations
                guess[work] = sub.active_guess(new, slack_weight or 1.0)
                ok_gap, ok_violation = sub.certificate(new, inner)
                ok = (ok_gap <= tol) & (ok_violation <= tol)
                take = torch.ones_like(ok)
                budget, since_fista = budget - steps, 0
            z[work[take]] = new[take]
            gap[work[take]], violation[work[take]] = ok_gap[take], ok_violation[take]
            done[work] = ok
        return QPPolishResult(z, torch.maximum(gap, violation), kkt_solves + fista_steps, done, violation, first,
                              kkt_solves, fista_steps)

    def subset(self, index: Tensor) -> QPDual:
        """The dual of the instances `index`, reusing the factorisations."""
        factors = {k: (v if v.shape[0] == 1 else v[index]) for k, v in self.factors.items()}
        sub = QPDual(self.data.index(index), factors, self.restore)
        sub._rows, sub._feasible = self._rows[index], self._feasible
        return sub
