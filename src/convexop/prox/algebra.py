"""Calculus of proximal maps: scaling, translation, dilation and block sums.

Each combinator is itself a :class:`~convexop.prox.base.Prox`; ``x`` has shape
``(*lead, n)`` and the combinator acts on the last dimension.
"""

from __future__ import annotations

import torch

from .base import Prox, bound_tensor, check_width, real_scalar

__all__ = ["Dilated", "Scaled", "SeparableSum", "Translated"]


def _check_prox(name: str, f) -> Prox:
    """Return ``f`` if it is a :class:`Prox`; the package contract is ValueError."""
    if not isinstance(f, Prox):
        raise ValueError(f"{name} must be a Prox instance, got {type(f).__name__}")  # noqa: TRY004
    return f


class Scaled(Prox):
    """``g(y) = alpha * f(y)`` with ``alpha > 0``.

    ``prox_{t g}(x) = prox_{(alpha t) f}(x)``.

    Args:
        f: a :class:`Prox`.
        alpha: float > 0.
    """

    def __init__(self, f: Prox, alpha: float):
        self.f = _check_prox("f", f)
        self.alpha = real_scalar("alpha", alpha, "> 0", lambda v: v > 0)
        self._indicator = f.is_indicator
        self._separable = f.separable

    def _apply(self, x, step):
        return self.f._apply(x, self.alpha * step)

    def _value(self, x):
        return self.alpha * self.f._value(x)

    def __repr__(self):
        return f"Scaled({self.f!r}, alpha={self.alpha})"


class Translated(Prox):
    """``g(y) = f(y - shift)``.

    ``prox_{t g}(x) = shift + prox_{t f}(x - shift)``.

    Args:
        f: a :class:`Prox`.
        shift: finite float or 1-D tensor/list of length ``n`` (per coordinate).
    """

    def __init__(self, f: Prox, shift):
        self.f = _check_prox("f", f)
        self.shift = bound_tensor("shift", shift, 0.0)
        if not bool(torch.isfinite(self.shift).all()):
            raise ValueError(f"shift must be finite, got {self.shift.tolist()}")
        self._indicator = f.is_indicator
        self._separable = f.separable

    def _shift(self, x):
        check_width("shift", self.shift, x)
        return self.shift.to(x)

    def _apply(self, x, step):
        s = self._shift(x)
        return s + self.f._apply(x - s, step)

    def _value(self, x):
        return self.f._value(x - self._shift(x))

    def __repr__(self):
        return f"Translated({self.f!r}, shift={self.shift.tolist()})"


class Dilated(Prox):
    """``g(y) = f(a * y)`` with a scalar ``a != 0``.

    Substituting ``z = a y`` in ``g(y) + ||y - x||^2 / (2t)`` gives
    ``f(z) + ||z - a x||^2 / (2 t a^2)``, hence
    ``prox_{t g}(x) = prox_{(t a^2) f}(a x) / a``.

    Args:
        f: a :class:`Prox`.
        a: finite float, nonzero.
    """

    def __init__(self, f: Prox, a: float):
        self.f = _check_prox("f", f)
        self.a = real_scalar("a", a, "!= 0", lambda v: v != 0)
        self._indicator = f.is_indicator
        self._separable = f.separable

    def _apply(self, x, step):
        return self.f._apply(self.a * x, (self.a * self.a) * step) / self.a

    def _value(self, x):
        return self.f._value(self.a * x)

    def __repr__(self):
        return f"Dilated({self.f!r}, a={self.a})"


class SeparableSum(Prox):
    """``g(y) = sum_k f_k(y[block_k])`` over contiguous blocks of the last dimension.

    The prox splits ``x`` (shape ``(*lead, n)``, ``n = size_1 + ... + size_K``) into
    blocks of shape ``(*lead, size_k)``, applies ``prox_{t f_k}`` to each and
    concatenates.  E.g. ``SeparableSum([(1, Box(0, 10)), (n - 1, Zero())])`` equals
    ``Box([0] + [-inf] * (n - 1), [10] + [inf] * (n - 1))``.

    Args:
        blocks: non-empty sequence of ``(size_k, f_k)`` with ``size_k`` a positive int
            and ``f_k`` a :class:`Prox`.
    """

    def __init__(self, blocks):
        try:
            blocks = list(blocks)
        except TypeError:
            raise ValueError(f"blocks must be a sequence of (size, Prox), got {blocks!r}") from None
        if not blocks:
            raise ValueError("blocks must contain at least one (size, Prox) pair")
        self.sizes: list[int] = []
        self.parts: list[Prox] = []
        for k, item in enumerate(blocks):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f"blocks[{k}] must be a pair (size, Prox), got {item!r}")
            size, f = item
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ValueError(f"blocks[{k}] size must be an int > 0, got {size!r}")
            self.sizes.append(size)
            self.parts.append(_check_prox(f"blocks[{k}] prox", f))
        self.size = sum(self.sizes)
        self._indicator = all(f.is_indicator for f in self.parts)
        self._separable = all(f.separable for f in self.parts)

    def _split(self, x):
        if x.shape[-1] != self.size:
            raise ValueError(
                f"x has last dimension {x.shape[-1]} but the blocks cover {self.size} coordinates"
            )
        return torch.split(x, self.sizes, dim=-1)

    def _apply(self, x, step):
        pieces = [f._apply(xk, step) for f, xk in zip(self.parts, self._split(x))]
        return torch.cat(pieces, dim=-1)

    def _value(self, x):
        values = [f._value(xk) for f, xk in zip(self.parts, self._split(x))]
        return torch.stack(values, dim=0).sum(dim=0)

    def __repr__(self):
        inner = ", ".join(f"({s}, {f!r})" for s, f in zip(self.sizes, self.parts))
        return f"SeparableSum([{inner}])"
