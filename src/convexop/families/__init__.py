"""Registered families. Import order defines the listing order of `convexop families`."""

from .base import Family, Parameter, get_family
from .elliptic_pde import EllipticPDE
from .heat_pde import HeatPDE
from .hedging import Hedging
from .operator_learning import Antiderivative, Burgers, DiffusionReaction
from .qp_dc3 import QPDC3
from .toy_box import ToyBox
from .utility_max import UtilityMax

registered_names = tuple(Family.registry)

__all__ = [
           "QPDC3",
           "Antiderivative",
           "Burgers",
           "DiffusionReaction",
           "EllipticPDE",
           "Family",
           "HeatPDE",
           "Hedging",
           "Parameter",
           "ToyBox",
           "UtilityMax",
           "get_family",
           "registered_names",
]
