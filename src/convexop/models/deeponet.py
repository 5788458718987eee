"""DeepONet (Lu et al. 2021), unstacked, with aligned (Cartesian-product) evaluation.

    G(u)(y) = c * sum_{k=1..p} b_k(u) t_k(y) + b_0,   c = 1 (standard) or 1 / sqrt(p) (ntk)

branch b: R^P -> R^p, `depth` dense layers (last one linear), input = theta standardised under the
family's training law (the sensor values for the operator-learning sets, the instance parameters
for the convex families); trunk t: features(y) -> R^p, `depth` dense layers with the activation
after every one (as DeepXDE). Widths: hidden = `width`, p = `basis_size` (0: p = width), so
width 40, depth 2 is Lu et al.'s [100, 40, 40] x [1, 40, 40] (7,401 parameters on antiderivative).
Trunk features: each coordinate mapped to [0, 1], or (cos, sin)(2 pi k x), k = 1, 2 on a
periodic axis (Lu et al. 2022 for Burgers). The output is multiplied by the family's fixed
`target_scale` (0.01 for Burgers) so that an O(1) network fits targets of any size.
Aligned evaluation: the trunk runs once on the family's points and `values(theta)` is one matrix
product (batch, p) x (p, points); `evaluate(theta, points)` answers at any points.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..families import Family
from .base import OperatorModel
from .layers import (
    Perceptron,
    check,
    check_common,
    coordinate_layout,
    input_statistics,
    point_features,
)


class DeepONet(OperatorModel, name="deeponet"):
    def __init__(self, family: Family, width: int = 64, depth: int = 3, activation: str = "tanh",
                 scaling: str = "standard", init_std: float = 1.0, basis_size: int = 0) -> None:
        check_common(width, depth, activation, scaling, init_std)
        check(isinstance(basis_size, int) and 0 <= basis_size <= 100_000, "basis_size", basis_size,
              "integers in [0, 100000] (0: the width)")
        super().__init__(family, width=width, depth=depth, activation=activation, scaling=scaling,
                         init_std=init_std, basis_size=basis_size)
        p = basis_size or width
        self.layout = coordinate_layout(family)
        features = torch.as_tensor(point_features(family.points, self.layout), dtype=torch.float32)
        self.register_buffer("trunk_input", features, persistent=False)
        mean, std = input_statistics(family, per_feature=True)
        self.register_buffer("input_mean", torch.as_tensor(mean))
        self.register_buffer("input_std", torch.as_tensor(std))
        self.register_buffer("output_scale", torch.tensor(float(family.target_scale)))
        self.branch = Perceptron(family.theta_size, width, p, depth, activation, scaling, init_std)
        self.trunk = Perceptron(features.shape[1], width, p, depth, activation, scaling, init_std,
                                activate_last=True)
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.contraction = 1.0 / math.sqrt(p) if scaling == "ntk" else 1.0

    def branch_values(self, theta: torch.Tensor) -> torch.Tensor:
        """(batch, P) -> (batch, p)."""
        return self.branch((theta - self.input_mean) / self.input_std)

    def combine(self, branch: torch.Tensor, trunk: torch.Tensor) -> torch.Tensor:
        """(batch, p), (points, p) -> (batch, points)."""
        return self.output_scale * (self.contraction * branch @ trunk.T + self.bias)

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        return self.combine(self.branch_values(theta), self.trunk(self.trunk_input))

    def evaluate(self, theta: torch.Tensor, points: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Values at arbitrary points (n, d) (or (n,) for 1-D families): (batch, n)."""
        points = points.detach().cpu().numpy() if torch.is_tensor(points) else points
        features = torch.as_tensor(point_features(points, self.layout), dtype=self.trunk_input.dtype,
                                   device=self.trunk_input.device)
        return self.combine(self.branch_values(theta), self.trunk(features))
