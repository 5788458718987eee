"""Abstract proximal map.

Conventions used throughout :mod:`convexop.prox`:

* A vector is the **last** dimension of a tensor.  ``x`` has shape ``(*lead, n)``,
  typically ``(batch, n)`` or ``(batch, M, n)``; all leading dimensions are batch
  dimensions and are processed independently.
* ``step`` is a python number, a 0-dim tensor, or a tensor whose shape is a
  (broadcastable) prefix of ``x.shape[:-1]``, e.g. a per-sample step of shape
  ``(batch,)``.  It is reshaped to ``(*step.shape, 1, ..., 1)`` so that it broadcasts
  over the remaining dimensions.  A tensor that already has ``x.dim()`` dimensions
  with a trailing 1 is used as it is.  Every step must be finite and > 0.
* Everything is written with differentiable torch operations, so proximal maps can
  be used inside autograd graphs (also with respect to ``step``).
* ``value(x)`` returns ``f(x)`` summed over the last dimension (shape ``x.shape[:-1]``).
  For indicator functions the value is ``0`` on the set and ``+inf`` outside it.
  Membership is tested with the tolerance :func:`feasibility_tol`: a relative
  tolerance of ``1e-9`` in float64 and ``16 * eps`` in lower precisions (``eps`` the
  machine epsilon of the dtype), measured against ``1 + |bound|``.
"""

from __future__ import annotations

import abc
import math

import torch

__all__ = [
    "Prox", "as_step", "bound_tensor", "check_width", "feasibility_tol", "indicator_value",
    "real_scalar",
]


def feasibility_tol(dtype: torch.dtype) -> float:
    """Relative tolerance used by indicator ``value`` checks for ``dtype``.

    Returns ``max(1e-9, 16 * torch.finfo(dtype).eps)``: ``1e-9`` for float64,
    about ``1.9e-6`` for float32.
    """
    return max(1e-9, 16.0 * torch.finfo(dtype).eps)


def real_scalar(name: str, value, allowed: str, ok) -> float:
    """Convert ``value`` to a finite float satisfying ``ok``; else ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number {allowed}, got {value!r}") from None
    if not math.isfinite(v) or not ok(v):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return v


def bound_tensor(name: str, value, none_is: float) -> torch.Tensor:
    """A float64 parameter: 0-dim (scalar) or 1-D (per coordinate); ``None`` -> ``none_is``."""
    if value is None:
        return torch.tensor(none_is, dtype=torch.float64)
    if isinstance(value, torch.Tensor):
        t = value.detach().to(torch.float64).cpu()
    else:
        try:
            if isinstance(value, (list, tuple)):
                t = [none_is if v is None else float(v) for v in value]
            else:
                t = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a scalar or 1-D (float, 1-D tensor/list, None), got {value!r}"
            ) from None
        t = torch.tensor(t, dtype=torch.float64)
    if t.dim() > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {tuple(t.shape)}")
    if t.dim() == 1 and t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{name} must not contain NaN")
    return t


def check_width(name: str, param: torch.Tensor, x: torch.Tensor) -> None:
    """Raise ValueError when a per-coordinate ``param`` does not match ``x.shape[-1]``."""
    if param.dim() == 1 and param.shape[0] != x.shape[-1]:
        raise ValueError(
            f"{name} has {param.shape[0]} coordinates but x has last dimension {x.shape[-1]}"
        )


def indicator_value(feasible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``0`` where the bool tensor ``feasible`` holds, else ``+inf`` (same shape)."""
    zero = torch.zeros(feasible.shape, dtype=dtype, device=feasible.device)
    return torch.where(feasible, zero, torch.full_like(zero, math.inf))


def _as_input(x: torch.Tensor) -> torch.Tensor:
    """Validate an input tensor ``x`` of shape ``(*lead, n)``; returns a floating tensor."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if x.dim() < 1:
        raise ValueError(f"x must have at least 1 dimension, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype())
    return x


def as_step(step, x: torch.Tensor) -> torch.Tensor:
    """Turn ``step`` into a positive tensor that broadcasts against ``x``.

    Args:
        step: python number, 0-dim tensor, tensor of shape ``s`` with ``s`` a
            broadcastable prefix of ``x.shape[:-1]`` (e.g. ``(batch,)``), or a tensor of
            ``x.dim()`` dimensions whose last dimension is 1.
        x: tensor of shape ``(*lead, n)``.

    Returns:
        Tensor of dtype/device of ``x`` with shape ``()`` or ``(*s, 1, ..., 1)``
        (``x.dim()`` dimensions).

    Raises:
        ValueError: if the shape does not fit or a step is not finite and > 0.
    """
    if not isinstance(step, torch.Tensor):
        try:
            value = float(step)
        except (TypeError, ValueError):
            raise ValueError(f"step must be a positive number or tensor, got {step!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"step must be finite and > 0, got {value}")
        return torch.tensor(value, dtype=x.dtype, device=x.device)
    step = step.to(dtype=x.dtype, device=x.device)
    lead = tuple(x.shape[:-1])
    if step.dim() == 0:
        pass
    elif step.dim() <= len(lead) and all(
        s == 1 or s == d for s, d in zip(step.shape, lead[: step.dim()])
    ):
        step = step.reshape(tuple(step.shape) + (1,) * (x.dim() - step.dim()))
    elif step.dim() == x.dim() and step.shape[-1] == 1 and all(
        s == 1 or s == d for s, d in zip(step.shape[:-1], lead)
    ):
        pass
    else:
        raise ValueError(
            f"step must be a scalar or have shape a prefix of x.shape[:-1]={lead}, "
            f"got shape {tuple(step.shape)}"
        )
    with torch.no_grad():
        if not bool(torch.isfinite(step).all()) or bool((step <= 0).any()):
            raise ValueError("step must be finite and > 0 in every entry")
    return step


class Prox(abc.ABC):
    """A closed convex function ``f`` together with its proximal map.

    ``prox_{step f}(x) = argmin_y f(y) + ||y - x||^2 / (2 step)``, applied to the
    last dimension of ``x``.  Subclasses implement :meth:`_apply` (with ``step``
    already a broadcastable tensor) and :meth:`_value`.
    """

    #: True when ``f`` is the indicator of a closed convex set (prox = projection).
    _indicator: bool = False
    #: True when ``f(y) = sum_i g_i(y_i)``: output coordinate i of the prox depends
    #: only on input coordinate i (per-coordinate parameters are allowed).
    _separable: bool = True

    @property
    def is_indicator(self) -> bool:
        """Whether ``f`` is the indicator of a convex set (its prox ignores ``step``)."""
        return self._indicator

    @property
    def separable(self) -> bool:
        """Whether ``f = sum_i g_i(y_i)``, so that its prox acts coordinate-wise."""
        return self._separable

    # -- public API -----------------------------------------------------------------
    def __call__(self, x: torch.Tensor, step=1.0) -> torch.Tensor:
        """``prox_{step f}(x)``.

        Args:
            x: tensor of shape ``(*lead, n)``.
            step: positive scalar or per-sample tensor (see module docstring).

        Returns:
            Tensor of shape ``(*lead, n)``.
        """
        x = _as_input(x)
        return self._apply(x, as_step(step, x))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` summed over the last dimension.

        Args:
            x: tensor of shape ``(*lead, n)``.

        Returns:
            Tensor of shape ``lead``; ``+inf`` where an indicator constraint is
            violated by more than :func:`feasibility_tol`.
        """
        return self._value(_as_input(x))

    def conjugate_prox(self, x: torch.Tensor, step=1.0) -> torch.Tensor:
        """``prox_{step f*}(x)`` through the Moreau identity.

        ``prox_{s f*}(x) = x - s * prox_{f/s}(x / s)``.

        Args:
            x: tensor of shape ``(*lead, n)``.
            step: positive scalar or per-sample tensor (see module docstring).

        Returns:
            Tensor of shape ``(*lead, n)``.
        """
        x = _as_input(x)
        s = as_step(step, x)
        return x - s * self._apply(x / s, 1.0 / s)

    # -- to implement ---------------------------------------------------------------
    @abc.abstractmethod
    def _apply(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Prox on a validated ``x`` ``(*lead, n)`` with ``step`` broadcastable to it."""

    @abc.abstractmethod
    def _value(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)`` summed over the last dim, shape ``x.shape[:-1]``."""

    def __repr__(self) -> str:  # pragma: no cover - overridden where parameters exist
        return f"{type(self).__name__}()"
