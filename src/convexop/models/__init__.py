"""Operator models, registered by name: `build_model(name, family, **kwargs)`, `from_checkpoint`."""

from .base import OperatorModel, build_model, from_checkpoint, save_model
from .geo import GEO

__all__ = ["OperatorModel", "build_model", "from_checkpoint", "save_model", "GEO"]
