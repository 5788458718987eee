"""Finite bases of a function space: values at points, quadrature, Gram matrix, project/decode.

A basis e_1..e_R is stored by its values at P evaluation points together with quadrature weights
w (so that <y, z> = sum_p w_p y_p z_p approximates the L2 inner product). Coefficients x (R,)
decode to values E x = V x; a function y given by values projects to the coefficients of its
L2-orthogonal projection, G^{-1} V^T W y, where G = V^T W V is the Gram matrix.

Everything here is float64 numpy; families turn the matrices into torch buffers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Basis:
    """A basis tabulated at points.

    values: (P, R) basis functions at the points; weights: (P,) quadrature weights;
    points: (P,) or (P, d); derivative: optional (P, R) derivatives (1-D bases);
    gram: optional exact (R, R) Gram matrix (else the quadrature one).
    """

    labels: list[str]
    values: np.ndarray
    weights: np.ndarray
    points: np.ndarray
    derivative: np.ndarray | None = None
    gram: np.ndarray | None = None
    _projector: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.weights), len(self.labels)):
            raise ValueError("values must have shape (points, rank)")
        if self.gram is None:
            self.gram = self.values.T @ (self.weights[:, None] * self.values)

    @property
    def rank(self) -> int:
        return len(self.labels)

    @property
    def projector(self) -> np.ndarray:
        """(R, P) matrix mapping values at the points to projection coefficients."""
        if self._projector is None:
            self._projector = np.linalg.solve(self.gram, self.values.T * self.weights[None, :])
        return self._projector

    def decode(self, coefficients: np.ndarray) -> np.ndarray:
        """(..., R) -> (..., P) values at the points."""
        return coefficients @ self.values.T

    def project(self, values: np.ndarray) -> np.ndarray:
        """(..., P) values -> (..., R) coefficients of the L2 projection onto the span."""
        return values @ self.projector.T

    def quadrature_gram(self) -> np.ndarray:
        return self.values.T @ (self.weights[:, None] * self.values)


def trapezoid_weights(points: np.ndarray) -> np.ndarray:
    """(P,) trapezoid-rule weights for sorted 1-D points."""
    gaps = np.diff(points)
    weights = np.zeros_like(points)
    weights[:-1] += gaps / 2
    weights[1:] += gaps / 2
    return weights


def hermite_functions(points: np.ndarray, rank: int, scale: float = 1.0):
    """Orthonormal Hermite functions h_j(u/scale)/sqrt(scale), j < rank, and their u-derivatives.

    Recurrence: h_0 = pi^(-1/4) e^(-s^2/2), h_1 = sqrt(2) s h_0,
    h_j = sqrt(2/j) s h_{j-1} - sqrt((j-1)/j) h_{j-2};  h_j' = sqrt(j/2) h_{j-1} - sqrt((j+1)/2) h_{j+1}.
    Returns (values, derivatives), both (P, rank).
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    s = np.asarray(points, dtype=np.float64) / scale
    table = np.zeros((len(s), rank + 1))
    table[:, 0] = math.pi ** -0.25 * np.exp(-s**2 / 2)
    if rank >= 1:
        table[:, 1] = math.sqrt(2.0) * s * table[:, 0]
    for j in range(2, rank + 1):
        table[:, j] = math.sqrt(2.0 / j) * s * table[:, j - 1] - math.sqrt((j - 1) / j) * table[:, j - 2]
    derivative = np.zeros((len(s), rank))
    derivative[:, 0] = -s * table[:, 0]
    for j in range(1, rank):
        derivative[:, j] = math.sqrt(j / 2) * table[:, j - 1] - math.sqrt((j + 1) / 2) * table[:, j + 1]
    norm = 1.0 / math.sqrt(scale)
    return table[:, :rank] * norm, derivative * norm / scale


def hermite_basis(points: np.ndarray, rank: int, scale: float = 1.0) -> Basis:
    """Hermite-function basis on a 1-D grid with trapezoid quadrature."""
    values, derivative = hermite_functions(points, rank, scale)
    suffix = "" if scale == 1.0 else f"(u/{scale:g})"
    labels = [f"h_{j}{suffix}" for j in range(rank)]
    return Basis(labels, values, trapezoid_weights(points), np.asarray(points, float), derivative)


def tensor_product_basis(first: Basis, second: Basis, labels: list[str] | None = None) -> Basis:
    """The tensor-product basis e_j(u1) f_l(u2) of two 1-D bases on the grid of their points.

    Points (P1 P2, 2) with u1 varying slowest (meshgrid indexing "ij", then reshape); coefficient
    (j, l) at index j R2 + l (j slowest); weights, values and the Gram matrix are Kronecker products.
    Labels default to "<first label> <second label>".
    """
    points = np.stack([m.reshape(-1) for m in np.meshgrid(first.points, second.points, indexing="ij")], axis=1)
    if labels is None:
        labels = [f"{a} {b}" for a in first.labels for b in second.labels]
    return Basis(list(labels), np.kron(first.values, second.values), np.kron(first.weights, second.weights),
                 points, gram=np.kron(first.gram, second.gram))


def total_degree_indices(dimension: int, degree: int) -> list[tuple[int, ...]]:
    """Multi-indices with entries summing to <= degree, in itertools.product order (the authors')."""
    return [idx for idx in itertools.product(range(degree + 1), repeat=dimension) if sum(idx) <= degree]


def time_brownian_basis(times: np.ndarray, brownian: np.ndarray, degree: int = 3) -> Basis:
    """phi_{a,b}(t, W_t) = t^a W_t^b / sqrt(b!), a + b <= degree, on sample paths.

    times: (n,) time points; brownian: (N, n) paths. Points are the N*n pairs (t, W_t), path-major;
    the quadrature is the empirical measure dt x dP_N (weights T / (n N)); the Gram matrix is the
    exact one under dt x Wiener measure on [0, T]:
    G_ij = (m-1)!! / sqrt(b_i! b_j!) * T^alpha / alpha, m = b_i + b_j even, alpha = a_i + a_j + m/2 + 1.
    """
    paths, steps = brownian.shape
    horizon = float(times[-1]) if times[-1] > 0 else 1.0
    indices = [(a, b) for (a, b) in total_degree_indices(2, degree)]
    t = np.broadcast_to(times[None, :], brownian.shape).reshape(-1)
    w = brownian.reshape(-1)
    values = np.stack([t**a * w**b / math.sqrt(math.factorial(b)) for a, b in indices], axis=1)
    gram = np.zeros((len(indices), len(indices)))
    for i, (ai, bi) in enumerate(indices):
        for j, (aj, bj) in enumerate(indices):
            m = bi + bj
            if m % 2:
                continue
            alpha = ai + aj + m / 2 + 1
            double_factorial = float(np.prod(np.arange(m - 1, 0, -2))) if m > 1 else 1.0
            gram[i, j] = double_factorial / math.sqrt(math.factorial(bi) * math.factorial(bj))
            gram[i, j] *= horizon**alpha / alpha
    labels = [_monomial_label((("t", a), ("W", b))) + (f"/sqrt({b}!)" if b > 1 else "") for a, b in indices]
    weights = np.full(paths * steps, horizon / (paths * steps))
    points = np.stack([t, w], axis=1)
    return Basis(labels, values, weights, points, gram=gram)


def path_polynomial_basis(times: np.ndarray, features: dict[str, np.ndarray], degree: int = 2) -> Basis:
    """Monomials t^a prod_k F_k^{b_k} of total degree <= degree on sample paths (empirical Gram).

    features: name -> (N, n) path values (e.g. {"Y": log(S/S0), "V": v/v0}); points are (t, *features).
    """
    names = list(features)
    first = features[names[0]]
    paths, steps = first.shape
    t = np.broadcast_to(times[None, :], first.shape).reshape(-1)
    columns = [t] + [features[k].reshape(-1) for k in names]
    indices = total_degree_indices(1 + len(names), degree)
    values = np.stack([np.prod([c**p for c, p in zip(columns, idx)], axis=0) for idx in indices], axis=1)
    labels = [_monomial_label(tuple(zip(["t"] + names, idx))) for idx in indices]
    horizon = float(times[-1]) if times[-1] > 0 else 1.0
    weights = np.full(paths * steps, horizon / (paths * steps))
    return Basis(labels, values, weights, np.stack(columns, axis=1))


def _monomial_label(powers: tuple[tuple[str, int], ...]) -> str:
    parts = [name if p == 1 else f"{name}^{p}" for name, p in powers if p > 0]
    return " ".join(parts) if parts else "1"
