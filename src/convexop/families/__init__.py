"""Registered families. Import order defines the listing order of `convexop families`."""

from .base import Family, Parameter, get_family
from .elliptic_pde import EllipticPDE
from .heat_pde import HeatPDE
from .hedging import Hedging
from .toy_box import ToyBox

registered_names = tuple(Family.registry)

__all__ = ["Family", "Parameter", "get_family", "HeatPDE", "ToyBox", "registered_names"]
