"""Concrete proximal maps.

All maps act on the last dimension of ``x`` (shape ``(*lead, n)``) and return a
tensor of the same shape; see :mod:`convexop.prox.base` for the ``step`` rules.
"""

from __future__ import annotations

import math

import torch

from .base import Prox, bound_tensor, check_width, feasibility_tol, indicator_value, real_scalar

__all__ = [
    "L1", "AsymmetricQuadratic", "Box", "ElasticNet", "L2Ball", "NonNegative", "Simplex",
    "Zero", "elliptic_potential", "negative_part_penalty",
]


def _soft_threshold(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``sign(x) * max(|x| - t, 0)`` written as ``x - clamp(x, -t, t)`` (differentiable)."""
    return x - torch.maximum(torch.minimum(x, t), -t)


class Zero(Prox):
    """``f = 0``: the prox is the identity; ``f*`` is the indicator of ``{0}``. It is the indicator of
    the whole space, so a sum of blocks with boxes stays an indicator."""

    _indicator = True

    def _apply(self, x, step):
        return x

    def _value(self, x):
        return x.new_zeros(x.shape[:-1])


class Box(Prox):
    """Indicator of ``{y : lower <= y <= upper}``; the prox is coordinate clamping.

    Args:
        lower: float, 1-D tensor/list of length ``n`` or None; ``-inf``/None entries
            mean "unbounded below" in that coordinate.
        upper: same for the upper bound (``+inf``/None = unbounded above).

    Example: only coordinate 0 in ``[0, 10]`` (``n = 3``): ``Box([0, -inf, -inf], [10, inf, inf])``.
    """

    _indicator = True

    def __init__(self, lower=None, upper=None):
        self.lower = bound_tensor("lower", lower, -math.inf)
        self.upper = bound_tensor("upper", upper, math.inf)
        if self.lower.dim() == 1 and self.upper.dim() == 1 and self.lower.shape != self.upper.shape:
            raise ValueError(f"lower and upper must have the same length, got "
                             f"{self.lower.shape[0]} and {self.upper.shape[0]}")
        if bool((self.lower == math.inf).any()) or bool((self.upper == -math.inf).any()):
            raise ValueError("lower must be < +inf and upper must be > -inf")
        if bool((self.lower > self.upper).any()):
            raise ValueError(
                f"lower must be <= upper in every coordinate, got lower={self.lower.tolist()}, "
                f"upper={self.upper.tolist()}"
            )

    def _bounds(self, x):
        check_width("lower", self.lower, x), check_width("upper", self.upper, x)
        return self.lower.to(x), self.upper.to(x)

    def _apply(self, x, step):
        lo, hi = self._bounds(x)
        return torch.maximum(torch.minimum(x, hi), lo)

    def _value(self, x):
        lo, hi = self._bounds(x)
        tol = feasibility_tol(x.dtype)
        # slack tol * (1 + |bound|) on finite bounds; infinite bounds need none
        slack_lo = torch.where(torch.isfinite(lo), tol * (1 + lo.abs()), torch.zeros_like(lo))
        slack_hi = torch.where(torch.isfinite(hi), tol * (1 + hi.abs()), torch.zeros_like(hi))
        ok = ((x >= lo - slack_lo) & (x <= hi + slack_hi)).all(dim=-1)
        return indicator_value(ok, x.dtype)

    def __repr__(self):
        return f"{type(self).__name__}(lower={self.lower.tolist()}, upper={self.upper.tolist()})"


class NonNegative(Box):
    """Indicator of the nonnegative orthant; the prox is ``max(x, 0)``."""

    def __init__(self):
        super().__init__(0.0, None)


class L1(Prox):
    """``f(y) = weight * ||y||_1``; prox is soft thresholding at ``step * weight``.

    Args:
        weight: float >= 0.
    """

    def __init__(self, weight: float = 1.0):
        self.weight = real_scalar("weight", weight, ">= 0", lambda v: v >= 0)

    def _apply(self, x, step):
        return _soft_threshold(x, step * self.weight)

    def _value(self, x):
        return self.weight * x.abs().sum(dim=-1)

    def __repr__(self):
        return f"L1(weight={self.weight})"


class L2Ball(Prox):
    """Indicator of ``{y : ||y - center||_2 <= radius}``; prox is radial projection.

    Args:
        radius: float > 0.
        center: None (origin), float, or 1-D tensor/list of length ``n``.
    """

    _indicator = True
    _separable = False

    def __init__(self, radius: float = 1.0, center=None):
        self.radius = real_scalar("radius", radius, "> 0", lambda v: v > 0)
        self.center = bound_tensor("center", 0.0 if center is None else center, 0.0)
        if not bool(torch.isfinite(self.center).all()):
            raise ValueError("center must be finite")

    def _offset(self, x):
        check_width("center", self.center, x)
        c = self.center.to(x)
        return c, x - c

    def _apply(self, x, step):
        c, d = self._offset(x)
        norm = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        norm = torch.clamp(norm, min=torch.finfo(x.dtype).tiny)
        scale = torch.clamp(self.radius / norm, max=1.0)
        return c + d * scale

    def _value(self, x):
        _, d = self._offset(x)
        norm = torch.linalg.vector_norm(d, dim=-1)
        ok = norm <= self.radius * (1 + feasibility_tol(x.dtype))
        return indicator_value(ok, x.dtype)

    def __repr__(self):
        return f"L2Ball(radius={self.radius}, center={self.center.tolist()})"


class Simplex(Prox):
    """Indicator of ``{y >= 0 : sum(y) = total}``; Euclidean projection by sorting.

    With ``u`` the entries sorted decreasingly and ``rho`` the largest ``k`` with
    ``u_k > (sum_{j<=k} u_j - total) / k``, the projection is ``max(x - theta, 0)``
    where ``theta = (sum_{j<=rho} u_j - total) / rho``.  Cost ``O(n log n)`` per row.

    Args:
        total: float > 0.
    """

    _indicator = True
    _separable = False

    def __init__(self, total: float = 1.0):
        self.total = real_scalar("total", total, "> 0", lambda v: v > 0)

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        """The threshold ``theta`` of shape ``(*lead, 1)`` for ``x`` of shape ``(*lead, n)``."""
        u, _ = torch.sort(x, dim=-1, descending=True)
        css = torch.cumsum(u, dim=-1) - self.total
        k = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
        active = u * k > css
        rho = torch.where(active, k, torch.zeros_like(k)).amax(dim=-1, keepdim=True)
        idx = (rho.long() - 1).clamp(min=0)
        return torch.gather(css, -1, idx) / rho.clamp(min=1)

    def _apply(self, x, step):
        return torch.clamp(x - self.threshold(x), min=0.0)

    def _value(self, x):
        tol = feasibility_tol(x.dtype)
        nonneg = (x >= -tol).all(dim=-1)
        scale = 1.0 + self.total + x.abs().sum(dim=-1)
        on_plane = (x.sum(dim=-1) - self.total).abs() <= tol * scale
        return indicator_value(nonneg & on_plane, x.dtype)

    def __repr__(self):
        return f"Simplex(total={self.total})"


class ElasticNet(Prox):
    """``f(y) = l1 * ||y||_1 + (l2 / 2) * ||y||_2^2``.

    Prox: ``soft_threshold(x, step * l1) / (1 + step * l2)``.

    Args:
        l1, l2: floats >= 0.
    """

    def __init__(self, l1: float, l2: float):
        self.l1 = real_scalar("l1", l1, ">= 0", lambda v: v >= 0)
        self.l2 = real_scalar("l2", l2, ">= 0", lambda v: v >= 0)

    def _apply(self, x, step):
        return _soft_threshold(x, step * self.l1) / (1 + step * self.l2)

    def _value(self, x):
        return (self.l1 * x.abs() + 0.5 * self.l2 * x * x).sum(dim=-1)

    def __repr__(self):
        return f"ElasticNet(l1={self.l1}, l2={self.l2})"


class AsymmetricQuadratic(Prox):
    """``f(y) = sum_i (positive/2) max(y_i, 0)^2 + (negative/2) min(y_i, 0)^2``.

    Prox: ``y / (1 + step * positive)`` where ``y >= 0`` and
    ``y / (1 + step * negative)`` where ``y < 0`` (each branch stays on its side of 0).

    Args:
        positive: float >= 0, curvature on the positive half-line.
        negative: float >= 0, curvature on the negative half-line.
    """

    def __init__(self, positive: float, negative: float):
        self.positive = real_scalar("positive", positive, ">= 0", lambda v: v >= 0)
        self.negative = real_scalar("negative", negative, ">= 0", lambda v: v >= 0)

    def _factors(self, step):
        """Multipliers ``(1/(1+step*positive), 1/(1+step*negative))``, broadcastable."""
        return 1.0 / (1.0 + step * self.positive), 1.0 / (1.0 + step * self.negative)

    def _apply(self, x, step):
        fp, fn = self._factors(step)
        return torch.where(x >= 0, x * fp, x * fn)

    def _value(self, x):
        pos, neg = torch.clamp(x, min=0.0), torch.clamp(x, max=0.0)
        return (0.5 * self.positive * pos * pos + 0.5 * self.negative * neg * neg).sum(dim=-1)

    def __repr__(self):
        return f"{type(self).__name__}(positive={self.positive}, negative={self.negative})"


class _NegativePartPenalty(AsymmetricQuadratic):
    """``AsymmetricQuadratic(0, xi / (2 - xi))`` with its factor kept in closed form.

    For ``y < 0`` the multiplier ``1 / (1 + step * c)`` with ``c = xi / (2 - xi)``
    equals ``(2 - xi) / (2 + (step - 1) * xi)``; at ``step = 1`` that is
    ``(2 - xi) / 2 = 1 - xi / 2`` evaluated without the round-off of ``c``.
    """

    def __init__(self, xi: float):
        self.xi = real_scalar("xi", xi, "in [0, 2)", lambda v: 0 <= v < 2)
        super().__init__(0.0, self.xi / (2.0 - self.xi))

    def _factors(self, step):
        return 1.0, (2.0 - self.xi) / (2.0 + (step - 1.0) * self.xi)

    def __repr__(self):
        return f"negative_part_penalty(xi={self.xi})"


def negative_part_penalty(xi: float) -> AsymmetricQuadratic:
    """Half-quadratic penalty ``(c/2) ||min(y, 0)||^2`` with ``c = xi / (2 - xi)``.

    Its prox with step 1 is exactly the heat-PDE activation ``y - (xi/2) min(y, 0)``.

    Derivation: ``f`` is separable; for ``y >= 0`` the prox is ``y`` (f vanishes there
    and the minimiser stays at ``y``).  For ``y < 0`` the scalar problem
    ``min_z (c/2) z^2 + (z - y)^2 / 2`` on ``z < 0`` has ``z = y / (1 + c)``.  Hence
    the prox equals ``y - (xi/2) min(y, 0)`` iff ``1 / (1 + c) = 1 - xi/2``, i.e.
    ``1 + c = 2 / (2 - xi)``, i.e. ``c = xi / (2 - xi)``.  Example: ``xi = 0.5`` gives
    ``c = 1/3`` and the prox ``0.75 y`` on ``y < 0``.

    Args:
        xi: float in ``[0, 2)`` (so that ``c`` is finite and >= 0).

    Returns:
        An :class:`AsymmetricQuadratic` with ``positive = 0`` and ``negative = c``.
    """
    return _NegativePartPenalty(xi)


def elliptic_potential(xi: float) -> AsymmetricQuadratic:
    """``phi(y) = y^2/2 - (xi/2) min(y, 0)^2 = AsymmetricQuadratic(1, 1 - xi)``.

    Derivation: ``y^2 = max(y,0)^2 + min(y,0)^2``, so
    ``phi(y) = (1/2) max(y,0)^2 + ((1 - xi)/2) min(y,0)^2``.  ``phi`` is convex iff
    both curvatures are >= 0, i.e. ``xi <= 1`` (strictly convex for ``xi < 1``).
    Its prox is ``y / (1 + step)`` for ``y >= 0`` and ``y / (1 + step (1 - xi))``
    for ``y < 0``.

    Args:
        xi: float <= 1.
    """
    xi = real_scalar("xi", xi, "<= 1", lambda v: v <= 1)
    return AsymmetricQuadratic(1.0, 1.0 - xi)
