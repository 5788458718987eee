"""`LastBatch`: the value a family computed for the last batch of parameters it was asked about.

A GEO's layers query one batch many times, and a polish and the certificate after it read one batch's
program data twice; families keep what is costly to derive from theta (a QP's data and factors, a load
vector, a quadratic objective's P, q, c) for the last batch only. Batches are compared by value (a
copy is kept), so a copy of the same rows hits and an in-place change of the caller's tensor misses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["LastBatch"]


class LastBatch:
    def __init__(self) -> None:
        self._theta: torch.Tensor | None = None
        self._tag: Any = None
        self._value: Any = None

    def get(self, theta: torch.Tensor, compute: Callable[[], Any], tag: Any = None) -> Any:
        """compute() for theta (and tag, e.g. a dtype), or the kept value when both match the last call."""
        theta = theta.detach()
        kept = self._theta
        if (kept is not None and self._tag == tag and kept.shape == theta.shape and kept.dtype == theta.dtype
                and kept.device == theta.device and torch.equal(kept, theta)):
            return self._value
        value = compute()
        self._theta, self._tag, self._value = theta.clone(), tag, value
        return value
