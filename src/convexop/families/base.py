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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch

from ..basis import Basis
from ..errors import InputError
from ..prox import Prox, Zero
from ..solvers.program import Certificate, CompositeProgram
from .parameters import Parameter, Pointwise

IN_BASIS_TOL = 1e-10


class Family(torch.nn.Module):
    """Base class of every family; subclasses register themselves by `name`."""

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = False
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    laws: ClassVar[tuple[str, ...]] = ("train",)

    def __init__(self, basis: Basis, **config: Any) -> None:
        super().__init__()
        self.basis = basis
        self.config = dict(config)
        self.register_buffer("basis_values", torch.as_tensor(basis.values), persistent=False)
        self.register_buffer("projector", torch.as_tensor(basis.projector), persistent=False)
        self.register_buffer("basis_weights", torch.as_tensor(basis.weights), persistent=False)

    # {"file_sha256": ...} when loaded from a family file (reassigned per instance, never mutated)
    source: Mapping[str, str] = MappingProxyType({})

    # ----- description -------------------------------------------------------------------
    @property
    def user_defined(self) -> bool:
        """Built by user code (from_torch, from_cvxpy, a family file), not a registered class."""
        return not type(self).name or self.name != type(self).name

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
        """Constructor keywords that rebuild this family (stored with checkpoints and datasets); for a
        family loaded from a file, the file's sha256 instead (its code rebuilds it)."""
        return dict(self.source) if self.source else dict(self.config)

    # ----- instances ---------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        """(n, P) parameters drawn from the named law."""
        raise NotImplementedError

    def theta_from_instances(self, instances: list[dict[str, Any]], where: str = "instances") -> np.ndarray:
        """Validate user instances (dicts of parameter name -> value); return theta (n, P). Batched:
        one array per parameter, checked at once; only a batch with a bad instance is walked one
        instance at a time, for the error naming its index and field."""
        fast = self._theta_batched(instances)
        if fast is not None:
            return fast
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

    def _theta_batched(self, instances: list[dict[str, Any]]) -> np.ndarray | None:
        """theta (n, P) when every instance is valid (None otherwise, for categorical parameters, or when
        the family checks more than the declared domains in its own `validate_instance`)."""
        if type(self).validate_instance is not Family.validate_instance:
            return None
        if not instances or any(p.choices is not None for p in self.parameters):
            return None
        names = set(self.parameter_names)
        if not all(isinstance(instance, dict) and instance.keys() == names for instance in instances):
            return None
        blocks = []
        for p in self.parameters:
            values = [instance[p.name] for instance in instances]
            if any(isinstance(v, (str, bytes, bool)) or v is None for v in values):
                return None
            try:
                block = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError, OverflowError, RecursionError):
                return None
            if block.shape != (len(instances), *p.shape):
                return None
            block = block.reshape(len(instances), p.size)
            if not p.contains(block).all():
                return None
            blocks.append(block)
        return np.concatenate(blocks, axis=1)

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

    def check_theta(self, theta: np.ndarray, where: str = "sampler") -> None:
        """Raise InputError naming `where`, the parameter and the first bad instance unless every row
        of theta (n, P) lies in the declared domains (vectorised `Parameter.validate`)."""
        start = 0
        for p in self.parameters:
            block = np.asarray(theta[:, start:start + p.size], dtype=np.float64)
            start += p.size
            if p.choices is not None:
                ok = np.isin(block, np.arange(len(p.choices))).all(-1)
            else:
                ok = p.contains(block)
            if not ok.all():
                first = int(np.flatnonzero(~ok)[0])
                raise InputError(where, None, "", f"drew {p.name} outside its domain ({p.domain()}) at instance "
                                                  f"{first}: {block[first].tolist()}")

    def instance_from_theta(self, theta_row: np.ndarray) -> dict[str, Any]:
        out, start = {}, 0
        for p in self.parameters:
            out[p.name] = p.decode(np.asarray(theta_row[start:start + p.size]))
            start += p.size
        return out

    def instances_from_theta(self, theta: np.ndarray) -> list[dict[str, Any]]:
        """`instance_from_theta` of every row of theta (n, P), one conversion per parameter."""
        if any(p.choices is not None for p in self.parameters):
            return [self.instance_from_theta(row) for row in theta]
        columns, start = {}, 0
        for p in self.parameters:
            block = np.asarray(theta[:, start:start + p.size], dtype=np.float64)
            columns[p.name] = block.reshape(len(theta), *p.shape).tolist()
            start += p.size
        return [dict(zip(columns, row)) for row in zip(*columns.values())] if columns else [{} for _ in theta]

    def split_theta(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """(batch, P) -> name -> (batch, *shape) tensors."""
        out, start = {}, 0
        for p in self.parameters:
            out[p.name] = theta[:, start:start + p.size].reshape(theta.shape[0], *p.shape)
            start += p.size
        return out

    # ----- the convex program ------------------------------------------------------------
    # The fixed part f, declared once per family (set in __init__): a Prox in coefficient space, or
    # `Pointwise(phi)` for PDE families (phi applied at the points of `grid_decode`, integrated with
    # `grid_weights`). The activation P prox_f E and f_value are derived from it.
    f: Prox | Pointwise | None = None
    step_hint: float = 1.0  # prox step of the activation; forward-backward GEO initialisation step
    newton_polish: ClassVar[bool] = False  # polish the in-basis program by active-set Newton
    has_hessian: ClassVar[bool] = False  # `hessian(x, theta)` is a closed form
    target_scale: float = 1.0  # typical size of the targets (output scale of value-space models)
    grid_axes: list[np.ndarray] | None = None  # the axes when the points are a tensor grid (FNO), else None

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Instance loss g_theta(E x). x: (batch, R) or (batch, M, R); theta: (batch, P)."""
        raise NotImplementedError

    def gradient(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """grad_x g_theta(E x): x (batch, R) -> (batch, R). Default: autograd of `g`, with a graph (so
        differentiable in x and theta) whenever grad is enabled; families with a closed form override it."""
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            point = x if x.requires_grad and create else x.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(self.g(point, theta).sum(), point, create_graph=create)
        return gradient

    def queries(self, x: torch.Tensor, offsets: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The GEO's M queries g_theta(x + c_m): x (batch, R), offsets (M, R) -> (batch, M).
        Families with a quadratic g override this with the exact expansion
        g(x) + <grad g(x), c_m> + c_m' H c_m / 2 (one gradient per instance instead of M values)."""
        return self.g(x[:, None, :] + offsets[None], theta)

    def grid_decode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., R) coefficients -> (..., Q) values where a `Pointwise` f is applied (the points)."""
        return self.decode(x)

    def grid_project(self, values: torch.Tensor) -> torch.Tensor:
        """(..., Q) values on that grid -> (..., R) coefficients of their L2 projection."""
        return self.project(values)

    def grid_weights(self) -> torch.Tensor:
        """(Q,) quadrature weights of that grid."""
        return self.basis_weights

    def activation(self, z: torch.Tensor) -> torch.Tensor:
        """P prox_f E in coefficient space, at step `step_hint`. z: (..., R) -> (..., R)."""
        if isinstance(self.f, Pointwise):
            return self.grid_project(self.f.phi(self.grid_decode(z), self.step_hint))
        if self.f is None:
            return z
        return self.f(z, self.step_hint)

    def f_value(self, x: torch.Tensor) -> torch.Tensor:
        """f(E x): (batch, R) -> (batch,); +inf where a constraint is violated."""
        if isinstance(self.f, Pointwise):
            values = self.f.phi.value(self.grid_decode(x)[..., None])  # phi at each point: (batch, Q)
            return (values * self.grid_weights().to(x.dtype)).sum(-1)
        if self.f is None:
            return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        return self.f.value(x)

    def objective(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return self.f_value(x) + self.g(x, theta)

    def lipschitz(self, theta: torch.Tensor) -> torch.Tensor | None:
        """(batch,) bound on the Lipschitz constant of the in-basis gradient of g, or None (unknown:
        solvers backtrack and the certificate uses step 1)."""
        return None

    def hessian(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """(batch, R, R) closed-form (generalised) Hessian of the smooth part of the in-basis program,
        for families with `has_hessian`."""
        raise NotImplementedError(f"{self.name} declares no closed-form Hessian")

    def in_basis_program(self, theta: torch.Tensor) -> CompositeProgram:
        """The in-basis program of an exact family for the instances theta (batch, P) (float64).
        Default: smooth part g, non-smooth part f (a Prox in coefficient space), `lipschitz(theta)`,
        the closed-form Hessian where declared. Families whose f is pointwise, or whose program is a
        QP dual, override this."""
        if not isinstance(self.f, (Prox, type(None))):
            raise NotImplementedError(f"{self.name}: a pointwise f needs its own in_basis_program")
        hessian = (lambda x: self.hessian(x, theta)) if self.has_hessian else None
        nonsmooth = None if isinstance(self.f, Zero) else self.f
        return CompositeProgram(lambda x: self.g(x, theta), nonsmooth, self.lipschitz(theta), hessian=hessian,
                                newton=self.newton_polish)

    def program(self, theta: torch.Tensor) -> CompositeProgram | None:
        """The in-basis program min_x f(E x) + g_theta(E x) of the instances theta (batch, P), whose
        subsets rebuild from theta (solvers drop finished instances); None for supervised families,
        where certificates and polishing do not apply."""
        if not self.exact:
            return None
        theta = theta.detach().double()
        program = self.in_basis_program(theta)
        program.select = lambda index: self.program(theta[index])
        return program

    def certificate(self, x: torch.Tensor, theta: torch.Tensor) -> Certificate | None:
        """The certificate (residual, gap, violation, objective; solvers/program.py) of answers x
        (batch, R) for the instances theta (batch, P); None for supervised families."""
        program = self.program(theta)
        return None if program is None else program.certificate(x.detach().double())

    def finalise(self, x: torch.Tensor) -> torch.Tensor:
        """A model's answer x (batch, R), promoted to float64, made ready for certificates: where f
        is an indicator in coefficient space it is re-projected in float64, so that a float32
        projection's rounding (~1e-7) does not make the objective +inf."""
        x = x.double()
        if isinstance(self.f, Prox) and self.f.is_indicator:
            return self.f(x, 1.0)
        return x

    def in_basis_optimum(self, theta: np.ndarray) -> np.ndarray:
        """(n, P) -> (n, R) argmin of the in-basis program to certificate measure <= 1e-10 (float64).
        Default: the kit's polish (active-set Newton / FISTA / KKT) from the prox of zero; raises
        RuntimeError naming the worst measure when an instance misses the tolerance."""
        from ..solvers.polish import polish

        t = torch.as_tensor(np.asarray(theta, dtype=np.float64), device=self.basis_values.device)
        program = self.program(t)
        if program is None:
            raise NotImplementedError(f"{self.name} is not an exact family; it has no in-basis optimum")
        start = self.finalise(torch.zeros(len(t), self.rank, dtype=torch.float64, device=t.device))
        result = polish(program, start, IN_BASIS_TOL, 100_000)
        if not bool(result.converged.all()):
            raise RuntimeError(f"{self.name}: in-basis optimum missed {IN_BASIS_TOL:g} on "
                               f"{int((~result.converged).sum())} of {len(t)} instances "
                               f"(worst measure {float(result.residual.max()):.2e})")
        return result.x.cpu().numpy()

    def extra_answers(self, x: torch.Tensor, theta: torch.Tensor) -> list[dict[str, Any]]:
        """Family-specific fields of a batch of `solve` answers (e.g. hedging's price, a QP's primal):
        x (batch, R) float64 coefficients, theta (batch, P) float64 -> one dict per instance."""
        return [{} for _ in range(len(x))]

    def cvxpy_form(self) -> tuple[Any, Any, Any] | None:
        """(problem, variable, set_parameters(theta_row)) of the in-basis program as a DPP CVXPY
        problem, for cross-checks and benchmarks; None where the family has none."""
        return None

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., R) coefficients -> (..., P) values at the evaluation points."""
        return x @ self.basis_values.to(x.dtype).T

    def project(self, values: torch.Tensor) -> torch.Tensor:
        """(..., P) values -> (..., R) coefficients of the L2 projection."""
        return values @ self.projector.to(values.dtype).T

    # ----- references --------------------------------------------------------------------
    target_dtype: ClassVar[type] = np.float64  # storage of the targets (large path-wise sets: float32)
    reference_method: ClassVar[str] = "in-basis optimum (the solver kit's polish to certificate <= 1e-10)"

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        """(n, P) -> (n, points) accurate answers, float64. Default for exact families: the decoded
        in-basis optimum (certificate <= 1e-10), in chunks of 1024 instances."""
        if not self.exact:
            raise NotImplementedError(f"{self.name} declares no reference solver")
        return self.solve_in_chunks(
            theta, 1024, lambda rows: self.basis.decode(self.in_basis_optimum(rows)), progress)

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

    def infeasible(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: the instances theta (n, P) whose constraints admit no point. Built-in families
        are feasible for every parameter in their domains; route (b) families run a phase-I solve."""
        return np.zeros(len(theta), dtype=bool)

    def unbounded(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: the instances theta (n, P) proven unbounded below. Built-in families never are
        (strongly convex objectives or bounded sets); user families with a quadratic objective prove it
        (families/user.py, solvers/unbounded.py)."""
        return np.zeros(len(theta), dtype=bool)

    def reference_error(self) -> float:
        """Estimated max-norm error of `reference` (documented per family; exact families default to
        the in-basis optimum's tolerance)."""
        return IN_BASIS_TOL if self.exact else float("nan")

    def error(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-instance mean squared error over the points: (n, P), (n, P) -> (n,)."""
        return ((predicted - target) ** 2).mean(dim=-1)

    @classmethod
    def default_training(cls) -> dict[str, Any]:
        """Default model and training settings for `convexop train` on this family."""
        return {}
