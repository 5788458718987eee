"""Building blocks of the baselines: dense layers with standard or NTK scaling, activations, the
input standardisation shared by DeepONet, FNO and MLP, and argument checks.

Scalings of a dense layer y = a W x + b (fan_in = len(x)):
- "standard": a = 1, W Glorot-normal (std sqrt(2 / (fan_in + fan_out))), b = 0 (Lu et al.'s DeepONet);
- "ntk": a = 1 / sqrt(fan_in), W ~ N(0, init_std^2), b = 0: the parameterisation of the width
  analyses (every pre-activation is O(1) at any width and the tangent kernel has a width limit).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError

ACTIVATIONS = {"tanh": torch.tanh, "softplus": torch.nn.functional.softplus,
               "gelu": torch.nn.functional.gelu, "relu": torch.relu}
SCALINGS = ("standard", "ntk")


def check(ok: bool, field: str, value: object, domain: str) -> None:
    if not ok:
        raise InputError(field, value, domain)


def check_common(width: int, depth: int, activation: str, scaling: str, init_std: float,
                 max_width: int = 100_000, max_depth: int = 100) -> None:
    check(isinstance(width, int) and 1 <= width <= max_width, "width", width, f"integers in [1, {max_width}]")
    check(isinstance(depth, int) and 1 <= depth <= max_depth, "depth", depth, f"integers in [1, {max_depth}]")
    check(activation in ACTIVATIONS, "activation", activation, "one of " + ", ".join(ACTIVATIONS))
    check(scaling in SCALINGS, "scaling", scaling, "one of " + ", ".join(SCALINGS))
    check(isinstance(init_std, (int, float)) and 0 < init_std < 1e3 and math.isfinite(init_std),
          "init_std", init_std, "(0, 1000)")


class Dense(torch.nn.Module):
    """y = a x W^T + b on the last axis; see the module docstring for the scalings."""

    def __init__(self, fan_in: int, fan_out: int, scaling: str = "standard", init_std: float = 1.0) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = torch.nn.Parameter(torch.zeros(fan_out))
        if scaling == "ntk":
            torch.nn.init.normal_(self.weight, 0.0, init_std)
            self.multiplier = 1.0 / math.sqrt(fan_in)
        else:
            torch.nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            self.multiplier = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.weight * self.multiplier, self.bias)


class Perceptron(torch.nn.Module):
    """depth dense layers: in -> width -> ... -> width -> out, activation between layers
    (and after the last one when `activate_last`)."""

    def __init__(self, fan_in: int, width: int, fan_out: int, depth: int, activation: str,
                 scaling: str = "standard", init_std: float = 1.0, activate_last: bool = False) -> None:
        super().__init__()
        sizes = [fan_in] + [width] * (depth - 1) + [fan_out]
        self.layers = torch.nn.ModuleList(Dense(a, b, scaling, init_std) for a, b in itertools.pairwise(sizes))
        self.activation = ACTIVATIONS[activation]
        self.activate_last = activate_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1 or self.activate_last:
                x = self.activation(x)
        return x


def input_statistics(family: Any, per_feature: bool, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of theta under the family's training law (fixed seed), either
    per parameter (P,) or, for function inputs, one pair over all sensors (1,). Constant
    parameters get scale 1."""
    theta = np.asarray(family.sample(n, np.random.default_rng(20250)), dtype=np.float64)
    if per_feature:
        mean, std = theta.mean(0), theta.std(0)
    else:
        mean, std = np.array([theta.mean()]), np.array([theta.std()])
    std = np.where(std > 1e-8 * (1.0 + np.abs(mean)), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def coordinate_features(axis_values: np.ndarray, periodic: bool, low: float, high: float) -> np.ndarray:
    """Features of one coordinate: (x - low) / (high - low) in [0, 1], or for a periodic axis of
    period high - low, (cos, sin)(2 pi k x / period) for k = 1, 2 (smooth across the seam, so
    resolution changes do not alias). Returns (len(axis_values), 1 or 4)."""
    z = (np.asarray(axis_values, dtype=np.float64) - low) / (high - low)
    if not periodic:
        return z[:, None]
    angle = 2.0 * math.pi * z
    return np.stack([np.cos(angle), np.sin(angle), np.cos(2 * angle), np.sin(2 * angle)], axis=1)


def coordinate_layout(family: Any) -> list[tuple[float, float, bool]]:
    """(low, high, periodic) per coordinate of the family's points. Grid families (with
    `grid_axes`) give the period of a periodic axis as n * spacing; other families the min and max."""
    axes = family.grid_axes
    if axes is not None:
        layout = []
        for axis, periodic in zip(axes, family.grid_periodic):
            if periodic:
                spacing = float(axis[1] - axis[0]) if len(axis) > 1 else 1.0
                layout.append((float(axis[0]), float(axis[0]) + len(axis) * spacing, True))
            else:
                layout.append((float(axis.min()), float(axis.max()), False))
        return layout
    points = np.asarray(family.points, dtype=np.float64)
    points = points[:, None] if points.ndim == 1 else points
    layout = []
    for column in points.T:
        low, high = float(column.min()), float(column.max())
        layout.append((low, high if high > low else low + 1.0, False))
    return layout


def point_features(points: np.ndarray, layout: list[tuple[float, float, bool]]) -> np.ndarray:
    """(n, d) or (n,) points -> (n, features) by `coordinate_features` per coordinate."""
    points = np.asarray(points, dtype=np.float64)
    points = points[:, None] if points.ndim == 1 else points
    if points.shape[1] != len(layout):
        raise InputError("points", None, "", f"expected {len(layout)} coordinates per point, got {points.shape[1]}")
    return np.concatenate([coordinate_features(points[:, j], periodic, low, high)
                           for j, (low, high, periodic) in enumerate(layout)], axis=1)
