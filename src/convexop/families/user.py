"""Bring your own family: a user's parametrised convex program  min_x f(x) + g_theta(x).

`from_torch(g, f, variables=..., parameters=..., sampler=...)` wraps a batched torch loss
g(x, theta) (x: (batch, n); theta: name -> (batch, *shape) tensors; returns (batch,)), a fixed f
from the prox library (None for f = 0; `SeparableSum` for blocks) and a sampler of theta into a
`UserFamily`: an exact family like the built-in ones (identity basis over the n coordinates, so the
GEO's activation is prox_f itself), whose reference is the in-basis optimum computed by the solver
kit (active-set Newton where f allows, else batched FISTA with restart and, unless a Lipschitz bound
is given, backtracking) to certificate <= 1e-8,
unless the user passes a reference solver. `convexop.from_cvxpy` (families/from_cvxpy.py) builds
the same kind of object from a CVXPY problem. Instances proven unbounded below (`unbounded`: quadratic
objectives, solvers/unbounded.py) are refused by the reference in one line before any solve.

The sampler is `sampler(n, rng) -> {name: array (n, *shape)}` (rng a numpy Generator), or a dict
name -> (low, high) (uniform law on the box, which is then also the parameter's domain) or
name -> callable(n, rng).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..basis import Basis
from ..errors import InputError
from ..prox import Prox, Zero
from ..solvers.polish import polish
from ..solvers.program import curvature
from .base import Family
from .parameters import Parameter

__all__ = ["UserFamily", "from_torch", "variable_layout"]

REFERENCE_TOL = 1e-8
REFERENCE_ITERATIONS = 50_000


def _shape(value: Any) -> tuple[int, ...]:
    shape = (int(value),) if isinstance(value, (int, np.integer)) else tuple(int(s) for s in value)
    if any(s < 1 for s in shape):
        raise ValueError(f"shapes must have positive sizes, got {shape}")
    return shape


def variable_layout(variables: int | Mapping[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """[(name, shape)] of the optimisation variables, in the order of the flat coordinates."""
    if isinstance(variables, (int, np.integer)):
        return [("x", _shape(variables))]
    return [(str(name), _shape(shape)) for name, shape in variables.items()]


def _labels(layout: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    labels = []
    for name, shape in layout:
        for index in np.ndindex(*shape):
            labels.append(name if not shape else f"{name}[{','.join(map(str, index))}]")
    return labels


class UserFamily(Family):
    """An exact family defined by user code (see the module docstring)."""

    exact = True
    newton_polish = True  # active-set Newton where f is a sum of zero, box, L1 and simplex pieces

    def __init__(self, name: str, layout: list[tuple[str, tuple[int, ...]]], parameters: tuple[Parameter, ...],
                 g: Callable, f: Prox | None, sampler: Callable[[int, np.random.Generator], dict],
                 lipschitz: Callable | None = None, reference: Callable | None = None,
                 training: dict | None = None, description: str = "", scale: float = 1.0,
                 coordinates: np.ndarray | None = None) -> None:
        labels = _labels(layout)
        size = len(labels)
        # values (the program's variables) = coordinates @ coefficients (default scale * I)
        matrix = scale * np.eye(size) if coordinates is None else np.asarray(coordinates, dtype=np.float64)
        basis = Basis(labels, matrix, np.ones(size), np.arange(size, dtype=np.float64))
        self.scale = float(scale)
        super().__init__(basis)
        self.name = name
        self.layout = layout
        self.parameters = tuple(parameters)
        self.f = f if f is not None else Zero()
        if not isinstance(self.f, Prox):
            raise TypeError(f"f must be a convexop.prox.Prox or None, got {type(f).__name__}")
        self._g, self._sampler, self._lipschitz, self._reference = g, sampler, lipschitz, reference
        self._training = dict(training or {})
        self.description = description
        self.step_hint = self._typical_step()  # the activation's prox step and GEO init's gradient step
        self.reference_method = ("user-supplied reference solver" if reference is not None else
                                 "in-basis optimum by batched FISTA (restart, backtracking) "
                                 f"to residual <= {REFERENCE_TOL:g}")

    def _typical_step(self) -> float:
        """1 / median Lipschitz bound over 64 sampled instances; where no bound is known, 1 / the
        median of an estimate of the largest Hessian eigenvalue of g (`curvature`, the largest of
        three points per instance: 0, the prox of 0 and a standard normal draw); 1 if that fails."""
        theta = torch.as_tensor(self.sample(64, np.random.default_rng(0)), dtype=torch.float64)
        if self._lipschitz is not None:
            return float(1.0 / self.lipschitz(theta).median())
        zero = torch.zeros(len(theta), self.rank, dtype=torch.float64)
        points = [zero, self.activation(zero), torch.randn(zero.shape, generator=torch.Generator().manual_seed(0),
                                                           dtype=torch.float64)]
        try:
            with torch.no_grad():
                estimate = torch.stack([curvature(lambda x: self.g(x, theta), p) for p in points]).amax(0)
        except (RuntimeError, ValueError, ArithmeticError):  # an evaluator without gradients: keep 1
            return 1.0
        typical = float(estimate.median())
        return 1.0 / typical if math.isfinite(typical) and typical > 1e-12 else 1.0

    # ----- identity -----------------------------------------------------------------------
    def default_training(self) -> dict[str, Any]:  # an instance method here: settings are per family
        rank = self.rank
        model = ({"depth": 10, "width": 2 * rank, "gamma": 0.5, "init": "forward-backward", "queries": "relative"}
                 if rank <= 32 else {"depth": 10, "width": 20, "gamma": 0.5, "init": "authors", "queries": "relative"})
        # label-free (the program's objective f + g at the answer, fresh draws every step, references for
        # the test split only): on the seven programs of benchmarks/your_program.py it matched or beat
        # supervised training at equal or lower wall time (README "Your program on the defaults")
        defaults = {"model": model,
                    "training": {"steps": 2000, "batch_size": 256, "lr": 3e-3, "n_instances": 2000,
                                 "eval_every": 200, "grad_clip": 1.0, "loss": "objective"}}
        for key, value in self._training.items():
            defaults[key] = defaults.get(key, {}) | dict(value)
        return defaults

    # ----- instances ----------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        if law != "train":
            raise InputError("law", law, "one of " + ", ".join(self.laws))
        drawn = self._sampler(n, rng)
        if not isinstance(drawn, Mapping):
            raise InputError("sampler", type(drawn).__name__, "",
                             "must return a dict of parameter name -> array (n, *shape)")
        columns = []
        for p in self.parameters:
            if p.name not in drawn:
                raise InputError(f"sampler[{p.name!r}]", None, "", "missing from the sampler's output")
            value = np.asarray(drawn[p.name], dtype=np.float64)
            if value.shape != (n, *p.shape):
                raise InputError(f"sampler[{p.name!r}]", None, "",
                                 f"expected shape {[n, *p.shape]}, got {list(value.shape)}")
            columns.append(value.reshape(n, -1))
        return np.concatenate(columns, axis=1) if columns else np.zeros((n, 0))

    def split_variables(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(batch, n) -> name -> (batch, *shape)."""
        out, start = {}, 0
        for name, shape in self.layout:
            size = int(np.prod(shape))
            out[name] = x[..., start:start + size].reshape(*x.shape[:-1], *shape)
            start += size
        return out

    # ----- the program --------------------------------------------------------------------
    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 2
        if not squeeze:
            batch, width, _ = x.shape
            x = x.reshape(batch * width, -1)
            theta = theta.repeat_interleave(width, dim=0)
        value = self._g(x, self.split_theta(theta.to(x.dtype)))
        return value if squeeze else value.reshape(batch, width)

    def lipschitz(self, theta: torch.Tensor) -> torch.Tensor | None:
        return None if self._lipschitz is None else torch.as_tensor(self._lipschitz(self.split_theta(theta))).to(theta)

    def extra_answers(self, x: torch.Tensor, theta: torch.Tensor) -> list[dict[str, Any]]:
        columns = {name: value.cpu().numpy().tolist() for name, value in self.split_variables(x.double()).items()}
        return [{"variables": {name: values[k] for name, values in columns.items()}} for k in range(len(x))]

    # ----- references ---------------------------------------------------------------------
    def unbounded(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: the instances theta (n, P) proven unbounded below, where the program kind has a
        proof: a quadratic objective (route (a) of from_cvxpy: `QuadraticProgram`) with a set and L1
        pieces the proof covers (solvers/unbounded.py: a verified recession direction). All False for
        other objectives: a from_torch g is a black box, and no finite number of its values proves a
        convex function unbounded below."""
        out = []
        for start in range(0, len(theta), 1024):
            t = torch.as_tensor(theta[start:start + 1024], dtype=torch.float64)
            flags = self.program(t).unbounded()
            out.append(np.zeros(len(t), dtype=bool) if flags is None else flags.cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=bool)

    def unbounded_by_cross_check(self, theta: np.ndarray) -> np.ndarray | None:
        """(n,) bool: instances an independent solver reports unbounded, for objectives without a proof;
        None where the family has no such solver (from_torch). Asked only about instances whose
        reference solve did not converge."""
        return None

    def in_basis_optimum(self, theta: np.ndarray) -> np.ndarray:
        """(n, R) optimum by the kit's polish (active-set Newton where f allows, else FISTA) from the
        prox of zero, to certificate <= REFERENCE_TOL; raises InputError when an instance misses it,
        naming the unbounded ones (`unbounded`, `unbounded_by_cross_check`) when that is why."""
        return self._optimum(theta, theta, 0)

    def _optimum(self, rows: np.ndarray, theta: np.ndarray, start: int) -> np.ndarray:
        """in_basis_optimum of rows = theta[start:start + len(rows)]; a refusal counts and numbers
        the instances of theta."""
        tol, max_iterations = REFERENCE_TOL, REFERENCE_ITERATIONS
        t = torch.as_tensor(rows, dtype=torch.float64)
        program = self.program(t)
        proven = program.unbounded()  # before the solve, which would spend all its iterations on them
        if proven is not None and bool(proven.any()):
            proven = self.unbounded(theta)
            raise InputError("reference", None, "", f"{int(proven.sum())} of {len(theta)} instances of {self.name} "
                             f"are unbounded below (first: instance {int(np.flatnonzero(proven)[0])}, a verified "
                             "recession direction lowers the objective without end); draw only bounded "
                             "instances, or pass --drop-infeasible to generate to leave them out")
        begin = self.finalise(torch.zeros(len(t), self.rank, dtype=torch.float64))
        result = polish(program, begin, tol, max_iterations)
        if bool(result.converged.all()):
            return result.x.numpy()
        missed = (~result.converged).cpu().numpy()
        reported = self.unbounded_by_cross_check(rows[missed])
        if reported is not None and reported.any():
            first = start + int(np.flatnonzero(missed)[np.flatnonzero(reported)[0]])
            raise InputError("reference", None, "", f"{int(reported.sum())} of the instances {start}.."
                             f"{start + len(rows) - 1} of {self.name} are unbounded below according to CVXPY "
                             f"(first: instance {first}; the reference solve did not converge on them); "
                             "draw only bounded instances")
        worst = float(result.residual.max())
        raise InputError("reference", None, "",
                         "the reference solve (active-set Newton / FISTA) left "
                         f"{int((~result.converged).sum())} of {len(t)} instances of {self.name} "
                         f"at residual up to {worst:.2e} > {tol:g} after {max_iterations} iterations; "
                         "give a Lipschitz bound or a reference solver")

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        if self._reference is not None:
            solve = lambda rows: np.asarray(self._reference(self.split_theta(torch.as_tensor(rows))), dtype=np.float64)
        else:
            starts = iter(range(0, len(theta), 1024))  # the chunks' offsets, so that refusals number instances of theta
            solve = lambda rows: self._optimum(rows, theta, next(starts))
        answers = self.solve_in_chunks(theta, 1024, solve, progress)
        with np.errstate(invalid="ignore"):  # a non-finite answer is refused by the caller, naming its index
            return answers @ self.basis.values.T

    def reference_error(self) -> float:
        return REFERENCE_TOL


def _parameters(parameters: Mapping[str, Any], sampler) -> tuple[Parameter, ...]:
    out = []
    for name, spec in parameters.items():
        if isinstance(spec, Parameter):
            out.append(spec)
            continue
        low, high = -math.inf, math.inf
        if isinstance(sampler, Mapping) and isinstance(sampler.get(name), tuple):
            low, high = (float(v) for v in sampler[name])
        out.append(Parameter(str(name), low=low, high=high, shape=_shape(spec) if spec != () else ()))
    return tuple(out)


def as_sampler(sampler, parameters: tuple[Parameter, ...]) -> Callable:
    if callable(sampler):
        return sampler
    if not isinstance(sampler, Mapping):
        raise TypeError("sampler must be a callable (n, rng) -> dict or a dict of per-parameter laws")
    missing = [p.name for p in parameters if p.name not in sampler]
    if missing:
        raise ValueError(f"sampler has no law for parameter(s): {', '.join(missing)}")

    def draw(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for p in parameters:
            law = sampler[p.name]
            out[p.name] = law(n, rng) if callable(law) else rng.uniform(law[0], law[1], (n, *p.shape))
        return out
    return draw


def from_torch(g: Callable, f: Prox | None = None, *, variables: int | Mapping[str, Any],
               parameters: Mapping[str, Any], sampler, name: str = "custom",
               lipschitz: Callable | None = None, reference: Callable | None = None,
               training: dict | None = None, description: str = "") -> UserFamily:
    """A family from a batched torch loss (see the module docstring).

    variables: n, or {name: shape} (the flat coordinates are the blocks in this order);
    parameters: {name: shape or Parameter}; sampler: callable or per-parameter laws;
    lipschitz: optional theta-dict -> (batch,) bound on the Lipschitz constant of grad g;
    reference: optional theta-dict -> (batch, n) accurate optimum (replaces batched FISTA);
    training: optional overrides {"model": {...}, "training": {...}} of the default settings.
    """
    layout = variable_layout(variables)
    declared = _parameters(parameters, sampler)
    return UserFamily(name, layout, declared, g, f, as_sampler(sampler, declared), lipschitz, reference,
                      training, description)
