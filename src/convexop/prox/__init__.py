"""Proximal maps of closed convex functions (pure torch, batched, differentiable).

``f(x, step)`` computes ``prox_{step f}(x) = argmin_y f(y) + ||y - x||^2 / (2 step)``
on the last dimension of ``x`` (shape ``(*lead, n)``); see :mod:`convexop.prox.base`.
"""

from .algebra import Dilated, Scaled, SeparableSum, Translated
from .base import Prox, as_step, feasibility_tol
from .catalogue import (
    L1,
    AsymmetricQuadratic,
    Box,
    ElasticNet,
    L2Ball,
    NonNegative,
    Simplex,
    Zero,
    elliptic_potential,
    negative_part_penalty,
)

__all__ = [
    "L1",
    "AsymmetricQuadratic",
    "Box",
    "Dilated",
    "ElasticNet",
    "L2Ball",
    "NonNegative",
    "Prox",
    "Scaled",
    "SeparableSum",
    "Simplex",
    "Translated",
    "Zero",
    "as_step",
    "elliptic_potential",
    "feasibility_tol",
    "negative_part_penalty",
]
