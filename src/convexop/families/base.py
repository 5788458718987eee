"""The family contract: min_x f(E x) + g_theta(E x) over coefficients x in R^R.

A family is a torch module (its basis matrices are non-persistent buffers, so `.to(device)` moves
them) that knows
- its parameters (names, domains, the training law and, where the paper has one, a test law);
- its basis (labels, evaluation points, decode) and rank R;
- `activation(z)`: P prox_f E, the GEO's activation, in coefficient space;
- `g(x, theta)`: the instance loss, batched over instances and over query points;
- `reference(theta)`: the accurate answer (values at the points) the paper scores against;
- `exact`: whether that answer is argmin f + g (certificates and polishing apply) or f, g are only
  a structural prior (heat-pde).
theta is a float array (n, P) with the parameters flattened in declaration order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..basis import Basis
from ..certificates import CompositeProgram
from ..errors import InputError
from ..prox import Box


@dataclass(frozen=True)
class Parameter:
    """One instance parameter: a real scalar/array within [low, high] (ends open or closed),
    or a categorical `choices` value (encoded as its index)."""

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
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def domain(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        low = "-inf" if self.low == -math.inf else f"{self.low:g}"
        high = "inf" if self.high == math.inf else f"{self.high:g}"
        if self.low == -math.inf and self.high == math.inf:
            interval = "finite real numbers"
        else:
            interval = f"finite numbers in {left}{low}, {high}{right}"
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
        ok = np.isfinite(array).all()
        ok = ok and (array > self.low).all() if self.low_open else ok and (array >= self.low).all()
        ok = ok and (array < self.high).all() if self.high_open else ok and (array <= self.high).all()
        if not ok:
            raise InputError(self.name, value, self.domain())
        return array.reshape(-1)

    def decode(self, flat: np.ndarray) -> Any:
        """Inverse of validate for JSON output."""
        if self.choices is not None:
            return self.choices[int(round(float(flat[0])))]
        if not self.shape:
            return float(flat[0])
        return flat.reshape(self.shape).tolist()


class Family(torch.nn.Module):
    """Base class of every family; subclasses register themselves by `name`."""

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    user_defined: ClassVar[bool] = False  # built by user code (from_torch, from_cvxpy), not registered
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    laws: ClassVar[tuple[str, ...]] = ("train",)
    registry: ClassVar[dict[str, type[Family]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            Family.registry[cls.name] = cls

    def __init__(self, basis: Basis, **config: Any) -> None:
        super().__init__()
        self.basis = basis
        self.config = dict(config)
        self.register_buffer("basis_values", torch.as_tensor(basis.values), persistent=False)
        self.register_buffer("projector", torch.as_tensor(basis.projector), persistent=False)

    # ----- description -------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.basis.rank

    @property
    def labels(self) -> list[str]:
        return self.basis.labels

    @property
    def points(self) -> np.ndarray:
        return self.basis.points

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters]

    @property
    def theta_size(self) -> int:
        return sum(p.size for p in self.parameters)

    def family_config(self) -> dict[str, Any]:
        """Constructor keywords that rebuild this family (stored with checkpoints and datasets)."""
        return dict(self.config)

    # ----- instances ---------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        """(n, P) parameters drawn from the named law."""
        raise NotImplementedError

    def theta_from_instances(self, instances: list[dict[str, Any]], where: str = "instances") -> np.ndarray:
        """Validate user instances (dicts of parameter name -> value); return theta (n, P)."""
        rows = []
        known = set(self.parameter_names)
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise InputError(f"{where}[{i}]", instance, "an object of parameter name -> value")
            unknown = sorted(set(instance) - known)
            if unknown:
                raise InputError(f"{where}[{i}].{unknown[0]}", None, "",
                                 f"unknown parameter; {self.name} has: {', '.join(self.parameter_names)}")
            rows.append(self.validate_instance(instance, f"{where}[{i}]"))
        return np.stack(rows) if rows else np.zeros((0, self.theta_size))

    def validate_instance(self, instance: dict[str, Any], where: str) -> np.ndarray:
        parts = []
        for p in self.parameters:
            if p.name not in instance:
                raise InputError(f"{where}.{p.name}", None, "", f"missing; allowed domain {p.domain()}")
            try:
                parts.append(p.validate(instance[p.name]))
            except InputError as error:
                raise InputError(f"{where}.{p.name}", instance[p.name], p.domain(),
                                 "" if error.domain else str(error).split(": ", 1)[-1]) from None
        return np.concatenate(parts)

    def instance_from_theta(self, theta_row: np.ndarray) -> dict[str, Any]:
        out, start = {}, 0
        for p in self.parameters:
            out[p.name] = p.decode(np.asarray(theta_row[start:start + p.size]))
            start += p.size
        return out

    def split_theta(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """(batch, P) -> name -> (batch, *shape) tensors."""
        out, start = {}, 0
        for p in self.parameters:
            out[p.name] = theta[:, start:start + p.size].reshape(theta.shape[0], *p.shape)
            start += p.size
        return out

    # ----- the convex program ------------------------------------------------------------
    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Instance loss g_theta(E x). x: (batch, R) or (batch, M, R); theta: (batch, P)."""
        raise NotImplementedError

    def queries(self, x: torch.Tensor, offsets: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The GEO's M queries g_theta(x + c_m): x (batch, R), offsets (M, R) -> (batch, M).
        Families with a quadratic g override this with the exact expansion
        g(x) + <grad g(x), c_m> + c_m' H c_m / 2 (one gradient per instance instead of M values)."""
        return self.g(x[:, None, :] + offsets[None], theta)

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        """P prox_f E in coefficient space. z: (..., R) -> (..., R)."""
        raise NotImplementedError

    def f_value(self, x: torch.Tensor) -> torch.Tensor:
        """f(E x): (batch, R) -> (batch,); +inf where a constraint is violated."""
        raise NotImplementedError

    def objective(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self.f_value(x) + self.g(x, theta)

    def program(self, theta: torch.Tensor) -> CompositeProgram | None:
        """The in-basis program min_x f(E x) + g_theta(E x) of the instances theta (batch, P), split
        into a smooth part and a part with an exact prox in coefficient space (see certificates.py);
        None for supervised families, where certificates and polishing do not apply.

        Default: for an exact family whose f o E is the indicator of a coordinate box, declared by
        (R,) tensor attributes `lower` and `upper` (+-inf where unbounded), the box program with g as
        the smooth part and `self.lipschitz(theta)` (batch,) as its step bound when the family has
        one (else solvers backtrack). Other exact families override this method.
        """
        lower, upper = getattr(self, "lower", None), getattr(self, "upper", None)
        if not (self.exact and isinstance(lower, torch.Tensor) and isinstance(upper, torch.Tensor)):
            return None
        lipschitz = self.lipschitz(theta) if callable(getattr(self, "lipschitz", None)) else None
        return CompositeProgram(lambda x: self.g(x, theta), Box(lower, upper), lipschitz)

    def certificate(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor | None:
        """(batch,) prox-gradient residual ||x - prox_{t h}(x - t grad S(x))|| / t of the in-basis
        program (`program(theta)`, step t = program.step) for exact families, else None."""
        program = self.program(theta)
        return None if program is None else program.residual(x)

    def finalise(self, x: torch.Tensor) -> torch.Tensor:
        """A model's answer x (batch, R), promoted to float64, made ready for certificates: identity
        by default; families whose f is an indicator re-project in float64, so that a float32
        projection's rounding (~1e-7) does not make the objective +inf."""
        return x.double()

    def violation(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor | None:
        """(batch,) constraint violation reported with each answer: the distance from x to dom h of
        the in-basis program by default (families solved through a dual report the primal
        violation instead); None for supervised families."""
        program = self.program(theta)
        return None if program is None else program.violation(x)

    newton_polish: ClassVar[bool] = False  # polish by active-set Newton (else warm-started FISTA)

    def polish_answers(self, x: torch.Tensor, theta: torch.Tensor, tol: float, max_iterations: int):
        """A family-specific polish returning a `references.forward_backward.SolveResult` whose
        `converged` means certified to tol, or None to use warm-started FISTA on `program(theta)`.
        Default: active-set Newton (references/active_set_newton.py; with the family's closed-form
        `gradient_and_hessian` where it has one) for families with `newton_polish` whose program's
        non-smooth part it supports, else None."""
        from ..references.active_set_newton import active_set_newton, newton_supported

        program = self.program(theta[:1]) if self.newton_polish else None
        if program is None or not newton_supported(program.nonsmooth):
            return None
        hessian = None
        if callable(getattr(self, "gradient_and_hessian", None)):
            hessian = lambda index, z: self.gradient_and_hessian(z, theta[index])[1]
        return active_set_newton(lambda index: self.program(theta[index]), x, tol, max_iterations, hessian=hessian)

    def extra_answer(self, x: torch.Tensor | None, theta: torch.Tensor) -> dict[str, Any]:
        """Family-specific fields of one `solve` answer (e.g. hedging's price)."""
        return {}

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., R) coefficients -> (..., P) values at the evaluation points."""
        return x @ self.basis_values.to(x.dtype).T

    def project(self, values: torch.Tensor) -> torch.Tensor:
        """(..., P) values -> (..., R) coefficients of the L2 projection."""
        return values @ self.projector.to(values.dtype).T

    # ----- references --------------------------------------------------------------------
    reference_method: ClassVar[str] = ""

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        """(n, P) -> (n, points) accurate answers, float64."""
        raise NotImplementedError

    @staticmethod
    def solve_in_chunks(theta: np.ndarray, size: int, solve, progress=None) -> np.ndarray:
        """Apply `solve` (rows of theta -> rows of answers) to chunks of `size` rows, reporting each
        chunk's length to `progress`; the rows of the answers, concatenated."""
        chunks = []
        for start in range(0, len(theta), size):
            chunks.append(solve(theta[start:start + size]))
            if progress is not None:
                progress(len(chunks[-1]))
        return np.concatenate(chunks)

    def reference_error(self) -> float:
        """Estimated max-norm error of `reference` (documented per family)."""
        return float("nan")

    def error(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-instance mean squared error over the points: (n, P), (n, P) -> (n,)."""
        return ((predicted - target) ** 2).mean(dim=-1)

    @classmethod
    def default_training(cls) -> dict[str, Any]:
        """Default model and training settings for `convexop train` on this family."""
        return {}


def get_family(name: str, **config: Any) -> Family:
    """Build a family by name: a registered one, `FILE.py:NAME` (a family object defined in that file)
    or an installed `convexop.families` entry point (raises InputError naming the allowed names)."""
    from . import registered_names  # noqa: F401  (ensures registration)
    from .loading import load_family

    if name in Family.registry:
        return Family.registry[name](**config)
    family = load_family(name, **config) if isinstance(name, str) else None
    if family is None:
        raise InputError("family", name, "one of " + ", ".join(sorted(Family.registry))
                         + ", FILE.py:NAME, or an installed convexop.families entry point")
    return family
