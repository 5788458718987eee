"""Operator models, registered by name: `build_model(name, family, **kwargs)`, `from_checkpoint`."""

from .base import OperatorModel, build_model, from_checkpoint, save_model
from .deeponet import DeepONet
from .fno import FNO
from .geo import GEO
from .geo_gradient import GradientGEO
from .mlp import MLP

__all__ = ["FNO", "GEO", "MLP", "DeepONet", "GradientGEO", "OperatorModel", "build_model", "from_checkpoint",
           "save_model"]
