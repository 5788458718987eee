"""The built-in families by name (the listing order of `convexop families`), and `get_family`."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import Family
from .elliptic_pde import EllipticPDE
from .elliptic_pde_2d import EllipticPDE2D
from .heat_pde import HeatPDE
from .hedging import Hedging
from .loading import load_family
from .operator_learning import Antiderivative, Burgers, DiffusionReaction
from .qp_dc3 import QPDC3, QPDC3Large
from .toy_box import ToyBox
from .utility_max import UtilityMax

__all__ = ["FAMILIES", "get_family"]

FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (
    EllipticPDE, EllipticPDE2D, HeatPDE, Hedging, Antiderivative, DiffusionReaction, Burgers, QPDC3, QPDC3Large, ToyBox,
    UtilityMax)}


def get_family(name: str, **config: Any) -> Family:
    """Build a family by name: a built-in one, `FILE.py:NAME` (a family object defined in that file)
    or an installed `convexop.families` entry point (raises InputError naming the allowed names)."""
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES[name](**config)
    family = load_family(name, **config) if isinstance(name, str) else None
    if family is None:
        raise InputError("family", name, "one of " + ", ".join(sorted(FAMILIES))
                         + ", FILE.py:NAME, or an installed convexop.families entry point")
    return family
