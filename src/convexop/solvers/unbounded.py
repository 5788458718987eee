"""Proofs that instances of  min_x 1/2 x'P x + q'x + c + h(x)  are unbounded below (batched).

h is a sum of Zero, Box (NonNegative, one-sided), L1 (weight w), Simplex and L2Ball pieces (a `Prox`
or a `SeparableSum` of them); P (B|1, R, R) is symmetric positive semidefinite. dom h is never empty
for these pieces, and (Frank-Wolfe, Eaves) such an instance is unbounded below iff there is a direction
d in the recession cone K of dom h (Box: d_i >= 0 where only the lower bound is finite, d_i <= 0 where
only the upper is, d_i = 0 where both are; Simplex, L2Ball: {0}; Zero, L1: free) with

    P d = 0   and   q'd + w ||d_L1||_1 < 0;

then F(x0 + t d) <= F(x0) + t (q'd + w ||d_L1||_1) -> -inf for any x0 in dom h.

Finding d: the Farkas alternative. The instance is bounded iff q lies in range(P) + S, S the box
{s: s_i = 0 where d_i is free, s_i >= 0 where d_i >= 0, s_i <= 0 where d_i <= 0, s_i free where d_i = 0,
|s_i| <= w on L1 coordinates}. With N an orthonormal basis of the numerical null space of P
(eigenvectors with eigenvalue <= NULL_TOL lambda_max) and s* = argmin_{s in S} 1/2 ||N'(q - s)||^2, the
residual d = -N N'(q - s*) satisfies, by the optimality of s*, d in K, P d = 0 and
q'd + w ||d_L1||_1 = -||d||^2: d = 0 exactly when the instance is bounded. The s-problem is a
box-constrained least squares (a `QuadraticProgram` with Hessian N N', Lipschitz constant 1, prox a
Box) solved by the kit's FISTA (fista.py) from the projection of q onto S (exact when P = 0), then
CLEANUP_ROUNDS alternating projections onto null(P) and K remove the solve's remaining error. We compute
d this way rather than from the iterates of a diverging reference solve: those settle into a recession
direction only at the rate at which the rest of the iterate converges (the smallest nonzero eigenvalue
of P), so their direction is not accurate enough for the test below, and an active-set Newton step on a
singular P gives none. The projection costs one batched eigh (one for all instances when P is shared)
and a short solve, only for instances whose P has a null space (measured: 0.04 s for 1,024 instances
of R = 20 with per-instance P, every one singular, on one CPU thread).

The proof: a candidate is projected exactly onto K (a Box of 0 / +-inf bounds) and accepted only when

    ||P d|| <= MATRIX_TOL ||P|| ||d||   and   q'd + w ||d_L1||_1 <= -DESCENT_TOL ||q|| ||d||,  d != 0,

(||P|| = lambda_max, spectral norm). The first is exact up to backward error: d is an exact recession
direction, P~ d = 0, of the instance with P~ = (I - uu') P (I - uu') (u = d / ||d||; positive
semidefinite, ||P~ - P|| <= 3 MATRIX_TOL ||P||) and the same q and h. An instance whose P has all
eigenvalues above MATRIX_TOL lambda_max (however slowly a solver converges on it) cannot pass; an
unbounded one whose steepest descent ||d|| is below DESCENT_TOL ||q|| is not labelled (a proof
fails safe). Other kinds of h (e.g. ElasticNet) give no proof: None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..prox import L1, Box, L2Ball, Prox, SeparableSum, Simplex, Zero
from .fista import fista
from .quadratic import QuadraticProgram

__all__ = ["DESCENT_TOL", "MATRIX_TOL", "NULL_TOL", "UnboundedProof", "prove_unbounded", "proven_unbounded",
           "recession_sets"]

Tensor = torch.Tensor

NULL_TOL = 1e-10  # eigenvalues <= NULL_TOL * lambda_max(P) span the numerical null space
MATRIX_TOL = 1e-9  # accept ||P d|| <= MATRIX_TOL ||P|| ||d||
DESCENT_TOL = 1e-6  # accept q'd + w||d_L1||_1 <= -DESCENT_TOL ||q|| ||d||
SOLVE_TOL = 1e-13  # the s-problem's stopping measure, relative to max(1, ||q||)
SOLVE_ITERATIONS = 2000
CLEANUP_ROUNDS = 16


@dataclass
class UnboundedProof:
    """Per instance: `unbounded` (B,) bool, the verified direction `direction` (B, R) (zero where
    none), and the two measured ratios of the acceptance test (NaN where no candidate was tried)."""

    unbounded: Tensor
    direction: Tensor
    matrix_ratio: Tensor  # ||P d|| / (||P|| ||d||)
    descent_ratio: Tensor  # (q'd + w||d_L1||_1) / (||q|| ||d||)


def _pieces(h: Prox | None, size: int) -> list[tuple[int, Prox]] | None:
    if h is None:
        return [(size, Zero())]
    parts = list(zip(h.sizes, h.parts)) if isinstance(h, SeparableSum) else [(size, h)]
    return parts if all(isinstance(p, (Zero, Box, L1, Simplex, L2Ball)) for _, p in parts) else None


def recession_sets(h: Prox | None, size: int) -> tuple[Box, Box, Tensor] | None:
    """(K, S, w) for h over `size` coordinates: K the recession cone of dom h and S the Farkas box
    (module doc), both as Boxes, and w (size,) the L1 weight per coordinate (0 off L1 pieces); None
    for an h with a piece outside Zero, Box, L1, Simplex, L2Ball."""
    parts = _pieces(h, size)
    if parts is None:
        return None
    cone_low, cone_high, s_low, s_high, weight = [], [], [], [], []
    inf = math.inf
    for width, part in parts:
        zeros = torch.zeros(width, dtype=torch.float64)
        if isinstance(part, Box):
            low_finite = torch.isfinite(part.lower.expand(width))
            high_finite = torch.isfinite(part.upper.expand(width))
            fixed, up, down = low_finite & high_finite, low_finite & ~high_finite, high_finite & ~low_finite
            cone_low.append(torch.where(up | fixed, 0.0, -inf))
            cone_high.append(torch.where(down | fixed, 0.0, inf))
            s_low.append(torch.where(fixed | down, -inf, 0.0))
            s_high.append(torch.where(fixed | up, inf, 0.0))
            weight.append(zeros)
        elif isinstance(part, (Simplex, L2Ball)):  # bounded sets: d = 0, s free
            cone_low.append(zeros), cone_high.append(zeros)
            s_low.append(zeros - inf), s_high.append(zeros + inf), weight.append(zeros)
        elif isinstance(part, L1):
            cone_low.append(zeros - inf), cone_high.append(zeros + inf)
            s_low.append(zeros - part.weight), s_high.append(zeros + part.weight), weight.append(zeros + part.weight)
        else:  # Zero: d free, s = 0
            cone_low.append(zeros - inf), cone_high.append(zeros + inf)
            s_low.append(zeros), s_high.append(zeros), weight.append(zeros)
    cat = torch.cat
    return Box(cat(cone_low), cat(cone_high)), Box(cat(s_low), cat(s_high)), cat(weight)


def prove_unbounded(p: Tensor, q: Tensor, h: Prox | None) -> UnboundedProof | None:
    """The proof of the module doc for the instances (P (B|1, R, R), q (B, R)) with non-smooth part h;
    None when h has a piece the proof does not cover."""
    batch, size = q.shape
    sets = recession_sets(h, size)
    if sets is None:
        return None
    cone, farkas, weight = sets
    p, q = p.detach().double(), q.detach().double()
    weight = weight.to(q)
    unbounded = torch.zeros(batch, dtype=torch.bool, device=q.device)
    direction = torch.zeros_like(q)
    matrix_ratio = torch.full((batch,), math.nan, dtype=torch.float64, device=q.device)
    descent_ratio = matrix_ratio.clone()
    # screen: a Cholesky factor of P - NULL_TOL ||P||_F I exists only when every eigenvalue exceeds
    # NULL_TOL ||P||_F >= NULL_TOL lambda_max, i.e. P has no numerical null space (one Cholesky is ~5x
    # cheaper than the eigh below, which then runs only on the instances that fail it)
    eye = torch.eye(size, dtype=p.dtype, device=p.device)
    shift = NULL_TOL * torch.linalg.matrix_norm(p)[:, None, None]
    suspect = torch.linalg.cholesky_ex(p - shift * eye).info != 0  # (B|1,)
    if not bool(suspect.any()):
        return UnboundedProof(unbounded, direction, matrix_ratio, descent_ratio)
    if p.shape[0] == 1 or bool(suspect.all()):
        values, vectors = torch.linalg.eigh(p)  # (B|1, R), ascending
    else:  # definite instances: unit eigenvalues (no null space), never read further
        index = torch.nonzero(suspect, as_tuple=True)[0]
        values = torch.ones_like(q)
        vectors = torch.zeros_like(p)
        values[index], vectors[index] = torch.linalg.eigh(p[index])
    norm = values[:, -1].clamp_min(0.0)  # ||P||
    null = values <= NULL_TOL * norm[:, None]
    rows = torch.nonzero(null.any(-1).expand(batch), as_tuple=True)[0]  # instances with a null space
    if len(rows) == 0:
        return UnboundedProof(unbounded, direction, matrix_ratio, descent_ratio)
    shared = p.shape[0] == 1
    pick = (lambda t: t) if shared else (lambda t: t[rows])
    projector = pick((vectors * null[:, None, :].to(q)) @ vectors.mT)  # N N' (k|1, R, R)
    project = (lambda v: v @ projector[0]) if shared else (lambda v: (v[:, None, :] @ projector)[:, 0])
    qr = q[rows]
    pq = project(qr)
    problem = QuadraticProgram(projector, -pq, 0.5 * (pq * qr).sum(-1), farkas,
                               torch.ones(len(rows), dtype=torch.float64, device=q.device), newton=False)
    scale = float(qr.norm(dim=-1).max().clamp_min(1.0))
    s = fista(problem, farkas(qr), SOLVE_TOL * scale, SOLVE_ITERATIONS).x  # from q projected onto S
    candidate = cone(-project(qr - s))
    for _ in range(CLEANUP_ROUNDS):  # alternating projections onto null(P) and K: removes the solve's error
        candidate = cone(project(candidate))
    length = candidate.norm(dim=-1)
    norm_rows = pick(norm).expand(len(rows))
    pd = (candidate @ p[0]) if shared else (candidate[:, None, :] @ p[rows])[:, 0]
    ratio_p = torch.where(norm_rows > 0, pd.norm(dim=-1) / (norm_rows * length), 0.0)  # P = 0: P d = 0
    descent = (qr * candidate).sum(-1) + (weight * candidate.abs()).sum(-1)
    ratio_q = descent / (qr.norm(dim=-1) * length)
    accepted = (length > 0) & (ratio_p <= MATRIX_TOL) & (ratio_q <= -DESCENT_TOL)
    unbounded[rows] = accepted
    direction[rows] = torch.where(accepted[:, None], candidate, torch.zeros_like(candidate))
    matrix_ratio[rows], descent_ratio[rows] = ratio_p, ratio_q
    return UnboundedProof(unbounded, direction, matrix_ratio, descent_ratio)


def proven_unbounded(p: Tensor, q: Tensor, h: Prox | None) -> Tensor:
    """(B,) bool: `prove_unbounded(p, q, h).unbounded`, all False where h has no proof."""
    proof = prove_unbounded(p, q, h)
    return proof.unbounded if proof is not None else torch.zeros(len(q), dtype=torch.bool, device=q.device)
