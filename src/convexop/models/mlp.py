"""Fully connected baseline: standardised theta (batch, P) -> `depth` dense layers -> values at the
family's points (batch, points), times the family's fixed `target_scale`."""

from __future__ import annotations

import torch

from ..families import Family
from .base import OperatorModel
from .layers import Perceptron, check_common, input_statistics


class MLP(OperatorModel, name="mlp"):
    def __init__(self, family: Family, width: int = 128, depth: int = 3, activation: str = "gelu",
                 scaling: str = "standard", init_std: float = 1.0) -> None:
        check_common(width, depth, activation, scaling, init_std)
        super().__init__(family, width=width, depth=depth, activation=activation, scaling=scaling,
                         init_std=init_std)
        mean, std = input_statistics(family, per_feature=True)
        self.register_buffer("input_mean", torch.as_tensor(mean))
        self.register_buffer("input_std", torch.as_tensor(std))
        self.register_buffer("output_scale", torch.tensor(float(family.target_scale)))
        self.network = Perceptron(family.theta_size, width, len(family.points), depth, activation, scaling, init_std)

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        return self.output_scale * self.network((theta - self.input_mean) / self.input_std)
