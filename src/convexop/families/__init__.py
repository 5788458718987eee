"""Families: the contract (base.py), the built-in families (registry.py) and the user fronts."""

from .base import Family
from .elliptic_pde import EllipticPDE
from .heat_pde import HeatPDE
from .hedging import Hedging
from .operator_learning import Antiderivative, Burgers, DiffusionReaction
from .parameters import Parameter
from .qp_dc3 import QPDC3
from .registry import FAMILIES, get_family
from .toy_box import ToyBox
from .utility_max import UtilityMax

__all__ = [
           "FAMILIES",
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
]
