"""Batched torch evaluation of CVXPY expression trees.

`evaluate(expr, variables, parameters)` computes a CVXPY expression for a whole batch of instances:
every value is a tensor of shape (batch, *expr.shape) (a leading 1 broadcasts), variables and
parameters are looked up by their `id`. Atoms outside the supported list raise `Unsupported`,
naming the expression, so the front ends can refuse a problem with one clear line.

`is_smooth(expr)` says whether an expression is built only from differentiable atoms (the `g` of a
program must be), `atom_name(expr)` gives a short description for messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["NONSMOOTH_ATOMS", "SMOOTH_ATOMS", "Unsupported", "describe", "evaluate", "is_smooth"]


class Unsupported(ValueError):
    """An expression the torch evaluator cannot represent."""


def describe(expr, limit: int = 80) -> str:
    """expr as CVXPY prints it, or (when that is long or spans lines, e.g. with a constant matrix) its
    kind, shape and the variables and parameters it involves."""
    text = str(expr)
    if len(text) <= limit and "\n" not in text:
        return text
    names = [v.name() for v in expr.variables()] + [p.name() for p in expr.parameters()]
    shape = "x".join(map(str, getattr(expr, "shape", ()))) or "scalar"
    return f"{type(expr).__name__} of shape {shape} in {', '.join(names) or 'constants'}"


def _broadcast(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(b, *s) -> (b, 1.., *s) so that it broadcasts against (b, *shape) the numpy way."""
    extra = len(shape) - (value.dim() - 1)
    if extra > 0:
        value = value.reshape(value.shape[0], *([1] * extra), *value.shape[1:])
    return value


def _sum_all(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(value.shape[0], -1).sum(dim=1)


def _reshape(value: torch.Tensor, shape: tuple[int, ...], order: str) -> torch.Tensor:
    batch = value.shape[0]
    if order == "C" or value.dim() <= 2 and len(shape) <= 1:
        return value.reshape(batch, *shape)
    flat = value.permute(0, *reversed(range(1, value.dim()))).reshape(batch, -1)
    out = flat.reshape(batch, *reversed(shape))
    return out.permute(0, *reversed(range(1, len(shape) + 1)))


def _matmul(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    dl, dr = left.dim() - 1, right.dim() - 1
    if dl == 0 or dr == 0:
        return _broadcast(left, right.shape[1:]) * _broadcast(right, left.shape[1:])
    if dl == 1 and dr == 1:
        return (left * right).sum(dim=-1)
    if dl == 2 and dr == 1:
        return (left @ right.unsqueeze(-1)).squeeze(-1)
    if dl == 1 and dr == 2:
        return (left.unsqueeze(-2) @ right).squeeze(-2)
    return left @ right


def _axis_sum(value: torch.Tensor, axis, keepdims: bool, reduce=torch.sum) -> torch.Tensor:
    if axis is None:
        out = reduce(value.reshape(value.shape[0], -1), dim=1)
        return out.reshape(value.shape[0], *([1] * (value.dim() - 1))) if keepdims else out
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    dims = tuple(a % (value.dim() - 1) + 1 for a in axes)
    return reduce(value, dim=dims, keepdim=keepdims)


def _logsumexp(value, dim, keepdim=False):
    return torch.logsumexp(value, dim=dim, keepdim=keepdim)


def _amax(value, dim, keepdim=False):
    return torch.amax(value, dim=dim, keepdim=keepdim)


def _amin(value, dim, keepdim=False):
    return torch.amin(value, dim=dim, keepdim=keepdim)


def _pnorm(value: torch.Tensor, p: float, axis, keepdims: bool) -> torch.Tensor:
    if p == math.inf:
        return _axis_sum(value.abs(), axis, keepdims, _amax)
    if p == 2:
        return torch.sqrt(_axis_sum(value * value, axis, keepdims))
    return _axis_sum(value.abs() ** p, axis, keepdims) ** (1.0 / p)


def _huber(x: torch.Tensor, m: float) -> torch.Tensor:
    a = x.abs()
    return torch.where(a <= m, a * a, 2 * m * a - m * m)


def _index(value: torch.Tensor, expr) -> torch.Tensor:
    key = expr.get_data()[0]
    if not isinstance(key, tuple):
        key = (key,)
    key = tuple(k if isinstance(k, slice) else torch.as_tensor(np.asarray(k)) for k in key)
    out = value[(slice(None),) + key]
    return out.reshape(value.shape[0], *expr.shape)


def _stack(parts: list[torch.Tensor], expr, axis: int) -> torch.Tensor:
    batch = max(p.shape[0] for p in parts)
    parts = [p.expand(batch, *p.shape[1:]) for p in parts]
    if all(p.dim() == 2 for p in parts) and axis == 0:  # vstack of vectors: rows
        return torch.stack(parts, dim=1)
    if all(p.dim() == 2 for p in parts):  # hstack of vectors
        return torch.cat(parts, dim=1)
    return torch.cat(parts, dim=axis + 1)


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]):
    return lambda expr, args: fn(args[0])


def _kl(x, y):
    return torch.where(x > 0, x * torch.log(x / y), torch.zeros_like(x)) - x + y


# name -> (evaluate(expr, argument values) -> value, smooth?)
_ATOMS: dict[str, tuple[Callable, bool]] = {
    "AddExpression": (lambda e, a: sum(_broadcast(v, e.shape) for v in a), True),
    "NegExpression": (_unary(torch.neg), True),
    "MulExpression": (lambda e, a: _matmul(a[0], a[1]), True),
    "multiply": (lambda e, a: _broadcast(a[0], e.shape) * _broadcast(a[1], e.shape), True),
    "DivExpression": (lambda e, a: _broadcast(a[0], e.shape) / _broadcast(a[1], e.shape), True),
    "Promote": (lambda e, a: _broadcast(a[0], e.shape).expand(a[0].shape[0], *e.shape), True),
    "Sum": (lambda e, a: _axis_sum(a[0], e.get_data()[0], e.get_data()[1]), True),
    "quad_over_lin": (lambda e, a: _sum_all(a[0] * a[0]) / a[1].reshape(-1), True),
    "QuadForm": (lambda e, a: _matmul(a[0], _matmul(a[1], a[0])), True),
    "SymbolicQuadForm": (lambda e, a: _matmul(a[0], _matmul(a[1], a[0])), True),
    "exp": (_unary(torch.exp), True),
    "log": (_unary(torch.log), True),
    "logistic": (_unary(torch.nn.functional.softplus), True),
    "entr": (_unary(lambda x: torch.where(x > 0, -x * torch.log(x), torch.zeros_like(x))), True),
    "kl_div": (lambda e, a: _kl(_broadcast(a[0], e.shape), _broadcast(a[1], e.shape)), True),
    "log_sum_exp": (lambda e, a: _axis_sum(a[0], e.get_data()[0], e.get_data()[1], _logsumexp), True),
    "huber": (lambda e, a: _huber(a[0], float(e.get_data()[0].value)), True),
    "index": (lambda e, a: _index(a[0], e), True),
    "special_index": (lambda e, a: _index(a[0], e), True),
    "reshape": (lambda e, a: _reshape(a[0], e.shape, e.get_data()[1]), True),
    "transpose": (lambda e, a: a[0] if a[0].dim() <= 2 else a[0].transpose(-1, -2), True),
    "Hstack": (lambda e, a: _stack(a, e, 1), True),
    "Vstack": (lambda e, a: _stack(a, e, 0), True),
    "cumsum": (lambda e, a: torch.cumsum(a[0], dim=(e.get_data()[0] or 0) + 1), True),
    "Trace": (lambda e, a: torch.diagonal(a[0], dim1=-2, dim2=-1).sum(-1), True),
    "diag_vec": (lambda e, a: torch.diag_embed(a[0]), True),
    "diag_mat": (lambda e, a: torch.diagonal(a[0], dim1=-2, dim2=-1), True),
    "conj": (lambda e, a: a[0], True),
    "real": (lambda e, a: a[0], True),
    "abs": (_unary(torch.abs), False),
    "norm1": (lambda e, a: _pnorm(a[0], 1.0, e.get_data()[0], False), False),
    "norm_inf": (lambda e, a: _pnorm(a[0], math.inf, e.get_data()[0], False), False),
    "max": (lambda e, a: _axis_sum(a[0], e.get_data()[0], e.get_data()[1], _amax), False),
    "min": (lambda e, a: _axis_sum(a[0], e.get_data()[0], e.get_data()[1], _amin), False),
    "maximum": (lambda e, a: torch.stack(torch.broadcast_tensors(*[_broadcast(v, e.shape) for v in a])).amax(0), False),
    "minimum": (lambda e, a: torch.stack(torch.broadcast_tensors(*[_broadcast(v, e.shape) for v in a])).amin(0), False),
}
SMOOTH_ATOMS = tuple(sorted(k for k, (_, smooth) in _ATOMS.items() if smooth))
NONSMOOTH_ATOMS = tuple(sorted(k for k, (_, smooth) in _ATOMS.items() if not smooth)) + ("Pnorm", "PnormApprox")


def _power_smooth(expr) -> bool:
    p = float(expr.get_data()[0])
    return p == int(p) and p >= 2 or p < 0  # x^2, x^4 and inv_pos are smooth on their domains


def is_smooth(expr) -> bool:
    """Whether expr is built only from differentiable atoms (on the interior of its domain)."""
    kind = type(expr).__name__
    if kind in ("Variable", "Parameter", "Constant", "CallbackParam"):
        return True
    if kind in ("Power", "PowerApprox"):
        return _power_smooth(expr) and is_smooth(expr.args[0])
    if kind not in _ATOMS:
        return False
    return _ATOMS[kind][1] and all(is_smooth(a) for a in expr.args)


def evaluate(expr, variables: dict[int, torch.Tensor], parameters: dict[int, torch.Tensor],
             dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """expr for a batch: variables / parameters map their id to (batch|1, *shape) tensors."""
    kind = type(expr).__name__
    if kind == "Variable":
        return variables[expr.id]
    if kind in ("Parameter", "CallbackParam"):
        return parameters[expr.id]
    if kind == "Constant":
        value = expr.value
        value = value.toarray() if hasattr(value, "toarray") else np.asarray(value)
        return torch.as_tensor(value, dtype=dtype, device=device).reshape(1, *expr.shape)
    args = [evaluate(a, variables, parameters, dtype, device) for a in expr.args]
    if kind in ("Power", "PowerApprox"):
        return args[0] ** float(expr.get_data()[0])
    if kind in ("Pnorm", "PnormApprox"):
        p, axis, keepdims = expr.get_data()[:3]
        return _pnorm(args[0], float(p), axis, keepdims)
    if kind not in _ATOMS:
        raise Unsupported(f"atom {kind} in `{describe(expr)}` is not supported "
                          f"(supported: {', '.join(SMOOTH_ATOMS + NONSMOOTH_ATOMS)}, power)")
    return _ATOMS[kind][0](expr, args)
