"""What a family's instances are (`Parameter`: names, shapes, honest domains, validation) and the
pointwise form of a fixed part f (`Pointwise`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..prox import Prox

__all__ = ["MAGNITUDE", "Parameter", "Pointwise"]

@dataclass(frozen=True)
class Pointwise:
    """A fixed part f(E x) = int phi((E x)(u)) du applied pointwise: phi a separable Prox (its value
    and prox act on each point), integrated with the family's grid weights; the activation is the
    projection of phi's prox back onto the basis (P prox_f E)."""

    phi: Prox


MAGNITUDE = 1e6  # an unbounded end of a domain means |value| <= 1e6: models compute in float32


@dataclass(frozen=True)
class Parameter:
    """One instance parameter: a real scalar/array within [low, high] (ends open or closed),
    or a categorical `choices` value (encoded as its index). An infinite end stands for MAGNITUDE
    (values beyond it overflow a float32 model's arithmetic), so the domain stated is honest."""

    name: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    shape: tuple[int, ...] = ()
    choices: tuple[str, ...] | None = None
    law: str = ""
    description: str = ""

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) with infinite ends replaced by -+MAGNITUDE."""
        return max(self.low, -MAGNITUDE), min(self.high, MAGNITUDE)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def domain(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        lo, hi = self.bounds
        left = "(" if self.low_open and lo == self.low else "["
        right = ")" if self.high_open and hi == self.high else "]"
        interval = f"finite numbers in {left}{lo:g}, {hi:g}{right}"
        if self.shape:
            return f"array of shape {list(self.shape)} of {interval}"
        return interval

    def validate(self, value: Any) -> np.ndarray:
        """Check one user-given value; return it flattened as float64 (size,)."""
        if self.choices is not None:
            if not isinstance(value, str) or value not in self.choices:
                raise InputError(self.name, value, self.domain())
            return np.array([float(self.choices.index(value))])
        if isinstance(value, (str, bytes, bool)) or value is None:
            raise InputError(self.name, value, self.domain())
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError, OverflowError, RecursionError):  # OverflowError: ints beyond float64
            raise InputError(self.name, value, self.domain()) from None
        if array.shape != self.shape:
            raise InputError(self.name, None, "", f"wrong shape: expected {list(self.shape)}, got {list(array.shape)}")
        if not self.contains(array.reshape(1, -1))[0]:
            raise InputError(self.name, value, self.domain())
        return array.reshape(-1)

    def contains(self, block: np.ndarray) -> np.ndarray:
        """(n,) bool: each row of block (n, size) finite and within the domain."""
        lo, hi = self.bounds
        ok = np.isfinite(block).all(-1)
        ok &= (block > lo).all(-1) if self.low_open and lo == self.low else (block >= lo).all(-1)
        ok &= (block < hi).all(-1) if self.high_open and hi == self.high else (block <= hi).all(-1)
        return ok

    def decode(self, flat: np.ndarray) -> Any:
        """Inverse of validate for JSON output."""
        if self.choices is not None:
            return self.choices[round(float(flat[0]))]
        if not self.shape:
            return float(flat[0])
        return flat.reshape(self.shape).tolist()


