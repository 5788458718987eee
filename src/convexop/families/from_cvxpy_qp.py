"""Route (b) of `from_cvxpy`: a strongly convex QP with affine constraints, solved through its dual.

The primal data P, q, A, b, G, h of each instance are read off the CVXPY expressions in torch
(`QPExtractor`): q and the constant terms by evaluating at y = 0, the matrices from the unit
vectors (exact, since the objective is quadratic and the constraints affine). The family's
coordinates are the dual z = (lambda, mu) (solvers/qp.py): g = the negated dual
function, f = the indicator of mu >= 0, the reported objective is the primal objective of the
recovered primal answer, the certificate its relative duality gap, the violation the primal one,
and polishing is the active-set KKT polish.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..prox import NonNegative, SeparableSum, Zero
from ..solvers.interior_point import phase_one, solve_qp
from ..solvers.qp import INFEASIBLE_MARGIN, QPData, QPDual, decoupled_coordinates
from ..solvers.qp_program import QPDualProgram, quadratic_queries
from .cvxpy_expressions import describe, evaluate
from .cvxpy_problems import SUPPORTED, check_problem, parameter_specs
from .memo import LastBatch
from .user import UserFamily, as_sampler

__all__ = ["CvxpyQPFamily", "HessianBound", "QPExtractor", "qp_refusal"]

_BOUND_ATTRIBUTES = ("nonneg", "pos", "nonpos", "neg", "bounds")


def qp_refusal(problem) -> tuple[str, str] | None:
    """(what, why) when route (b) does not apply, else None."""
    sign = 1 if type(problem.objective).__name__ == "Minimize" else -1
    expr = problem.objective.expr if sign > 0 else -problem.objective.expr
    if not (expr.is_quadratic() or expr.is_affine()):
        return "objective", f"is not quadratic, and the constraints are not simple sets ({SUPPORTED})"
    for c in problem.constraints:
        if type(c).__name__ not in ("Equality", "Inequality", "Zero", "NonPos", "NonNeg") \
                or not all(a.is_affine() for a in c.args):
            return f"constraint `{describe(c)}`", f"is neither a simple set nor affine ({SUPPORTED})"
    return None


class QPExtractor:
    """Batched QP data of a CVXPY problem (minimise 1/2 y'Py + q'y + c, A y = b, G y <= h)."""

    def __init__(self, problem, variables, parameters, sign: float, constraints: bool = True) -> None:
        self.problem, self.variables, self.parameters, self.sign = problem, variables, parameters, sign
        self.sizes = [max(1, int(np.prod(v.shape))) for v in variables]
        self.n = sum(self.sizes)
        kept = problem.constraints if constraints else []
        self.equalities = [c for c in kept if type(c).__name__ in ("Equality", "Zero")]
        self.inequalities = [c for c in kept if type(c).__name__ in ("Inequality", "NonPos", "NonNeg")]
        self.with_bounds = constraints
        self.shared: dict[str, torch.Tensor] = {}

    def _blocks(self, y: torch.Tensor) -> dict[int, torch.Tensor]:
        out, start = {}, 0
        for v, size in zip(self.variables, self.sizes):
            out[v.id] = y[:, start:start + size].reshape(y.shape[0], *v.shape)
            start += size
        return out

    def _residuals(self, constraints, y, params) -> torch.Tensor:
        """Stacked lhs - rhs (Inequality: lhs <= rhs; NonNeg: -expr <= 0) of the constraints, (B, rows)."""
        rows = []
        blocks = self._blocks(y)
        for c in constraints:
            kind = type(c).__name__
            if kind in ("Equality", "Inequality"):
                value = evaluate(c.args[0], blocks, params, y.dtype) - evaluate(c.args[1], blocks, params, y.dtype)
            else:
                value = evaluate(c.args[0], blocks, params, y.dtype) * (-1.0 if kind == "NonNeg" else 1.0)
            rows.append(value.expand(y.shape[0], *value.shape[1:]).reshape(y.shape[0], -1))
        return torch.cat(rows, dim=1) if rows else y.new_zeros(y.shape[0], 0)

    def _bound_rows(self, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """G rows and h of the variables' bound attributes."""
        g_rows, h_rows, start = [], [], 0
        for v, size in zip(self.variables, self.sizes):
            for key, sign, bound in (("nonneg", -1.0, 0.0), ("pos", -1.0, 0.0),
                                     ("nonpos", 1.0, 0.0), ("neg", 1.0, 0.0)):
                if v.attributes.get(key):
                    g_rows.append(sign * torch.eye(self.n, dtype=dtype)[start:start + size])
                    h_rows.append(torch.full((size,), bound, dtype=dtype))
            bounds = v.attributes.get("bounds")
            for k, sign in ((0, -1.0), (1, 1.0)) if bounds is not None else ():
                if bounds[k] is not None:
                    g_rows.append(sign * torch.eye(self.n, dtype=dtype)[start:start + size])
                    h_rows.append(sign * torch.as_tensor(np.broadcast_to(bounds[k], v.shape), dtype=dtype).reshape(-1))
            start += size
        if not g_rows:
            return torch.zeros(0, self.n, dtype=dtype), torch.zeros(0, dtype=dtype)
        return torch.cat(g_rows), torch.cat(h_rows)

    def data(self, params: dict[int, torch.Tensor], batch: int, dtype=torch.float64, matrices: bool = True) -> dict:
        """QP data of a batch; matrices (P, A, G) only when `matrices` (else from `self.shared`)."""
        points = torch.zeros(1, self.n, dtype=dtype)
        if matrices:
            points = torch.cat([points, torch.eye(self.n, dtype=dtype)])
        k = points.shape[0]
        expanded = {i: p.repeat_interleave(k, 0) if p.shape[0] > 1 else p for i, p in params.items()}
        rows = max([batch] + [1])
        y = points.repeat(rows, 1).requires_grad_(True)
        with torch.enable_grad():
            value = self.sign * evaluate(self.problem.objective.expr, self._blocks(y), expanded, dtype).reshape(-1)
            value = value.expand(y.shape[0]) if value.numel() == 1 else value
            (gradient,) = torch.autograd.grad(value.sum(), y, allow_unused=True)
        gradient = torch.zeros_like(y) if gradient is None else gradient
        gradient, y = gradient.detach().reshape(rows, k, self.n), y.detach()
        eq = self._residuals(self.equalities, y, expanded).reshape(rows, k, -1)
        ineq = self._residuals(self.inequalities, y, expanded).reshape(rows, k, -1)
        out = {"q": gradient[:, 0], "c": value.detach().reshape(rows, k)[:, 0], "b": -eq[:, 0], "h": -ineq[:, 0]}
        if matrices:
            out["P"] = (gradient[:, 1:] - gradient[:, :1]).mT
            out["P"] = (out["P"] + out["P"].mT) / 2
            out["A"] = (eq[:, 1:] - eq[:, :1]).mT
            out["G"] = (ineq[:, 1:] - ineq[:, :1]).mT
        else:
            out |= {key: self.shared[key] for key in ("P", "A", "G")}
        g_bounds, h_bounds = self._bound_rows(dtype)
        if len(h_bounds) and self.with_bounds:
            out["G"] = torch.cat([out["G"], g_bounds.expand(out["G"].shape[0], -1, -1)], dim=1)
            out["h"] = torch.cat([out["h"], h_bounds.expand(out["h"].shape[0], -1)], dim=1)
        return out


class CvxpyQPFamily(UserFamily):
    """Route (b): coordinates are the dual variables (lambda for the equalities, mu >= 0)."""

    def __init__(self, problem, sampler, name: str, training: dict | None, interior=None) -> None:
        check_problem(problem)
        self._interior = interior
        self.cvx_variables = sorted(problem.variables(), key=lambda v: v.id)
        self.cvx_parameters, specs = parameter_specs(problem)
        sign = 1.0 if type(problem.objective).__name__ == "Minimize" else -1.0
        self.problem, self.sign = problem, sign
        self.extractor = QPExtractor(problem, self.cvx_variables, self.cvx_parameters, sign)
        draw = as_sampler(sampler, specs)
        self._last = LastBatch()
        self._factors = None
        self.null_space: torch.Tensor | None = None  # (n, k) when the equalities are eliminated (singular P)
        probe = self._probe(draw, specs)
        me, mi = probe["A"].shape[1], probe["G"].shape[1]
        if me + mi == 0:
            raise InputError("problem", None, "", "no constraint is left once the equalities are eliminated: the "
                             "problem is an unconstrained quadratic (solve it in closed form, or use from_torch)")
        factors = QPDual.factor(QPData(*(probe[k] for k in ("P", "q", "A", "b", "G", "h"))))
        scale = float(factors["lipschitz"].median()) ** -0.5  # coefficients x = z / scale: 1-smooth
        # z = E x: with matrices that do not depend on the parameters, the decoupled coordinates
        # (solvers/qp.py: lambda block solved by one step, mu block Jacobi-scaled; the dual of the DC3
        # QP goes from condition 4e5 to 7e3); else the scalar scaling
        shared = all(k in self.extractor.shared for k in ("P", "A", "G"))
        coordinates = (decoupled_coordinates(factors["M"][0], me) if shared
                       else scale * torch.eye(me + mi, dtype=torch.float64))
        self.coordinates, self.inverse = coordinates, torch.linalg.inv(coordinates)
        curvature = self.coordinates.T @ factors["M"][0] @ self.coordinates
        self._shared_lipschitz = float(torch.linalg.eigvalsh((curvature + curvature.T) / 2)[-1]) if shared else None
        layout = [(k, (m,)) for k, m in (("lambda", me), ("mu", mi)) if m]
        blocks = [(me, Zero())] * bool(me) + [(mi, NonNegative())] * bool(mi)
        f = SeparableSum(blocks) if len(blocks) > 1 else blocks[0][1]
        super().__init__(name, layout, specs, None, f, draw,  # g: overridden below
                         lipschitz=self._dual_lipschitz,
                         training=training, description=str(problem), coordinates=coordinates.numpy())
        self.route = "QP dual"
        self.primal_layout = [(v.name(), tuple(v.shape)) for v in self.cvx_variables]
        self.reference_method = "QP dual optimum: batched interior point + active-set KKT polish, gap <= 1e-9"

    def default_training(self) -> dict[str, Any]:
        """With constant matrices (decoupled coordinates, a 1-smooth dual) and R <= 128: the GEO starts
        as 16 exact projected-gradient steps on the dual (forward-backward init, central differences
        of width 2R, gamma 0) and is refined label-free (the dual objective, fresh draws, no reference
        solves) at a small rate: on the DC3 QP the start alone gives a mean gap of 0.5%, 300 label-free
        steps at 1e-5 give 0.16%, while supervised or faster training (1e-4) moved it to 10-13%."""
        defaults = super().default_training()
        if self._shared_lipschitz is None or self.rank > 128:
            return defaults
        defaults["model"] = {"depth": 16, "width": 2 * self.rank, "gamma": 0.0, "init": "forward-backward",
                             "queries": "relative", "start_std": 0.0}
        defaults["training"] = defaults["training"] | {"loss": "objective", "lr": 1e-5, "steps": 600}
        for key, value in self._training.items():
            defaults[key] = defaults.get(key, {}) | dict(value)
        return defaults

    def _probe(self, draw, specs) -> dict:
        """QP data of two sampled instances: checks strong convexity, finds the shared matrices."""
        theta = draw(2, np.random.default_rng(0))
        params = {p.id: torch.as_tensor(np.asarray(theta[p.name()], dtype=np.float64)) for p in self.cvx_parameters}
        data = self.extractor.data(params, 2)
        eigenvalues = torch.linalg.eigvalsh(data["P"])
        if bool((eigenvalues[:, 0] <= 1e-10 * eigenvalues[:, -1].abs().clamp_min(1.0)).any()):
            self._eliminate_equalities(data, float(eigenvalues[:, 0].min()))
            return self._reduce(data)[0]
        for key in ("P", "A", "G", "q"):  # unit-vector differences carry rounding: compare to 1e-12
            scale = float(data[key].abs().max()) if data[key].numel() else 0.0
            if torch.allclose(data[key][0], data[key][1], rtol=0, atol=1e-12 * max(1.0, scale)):
                self.extractor.shared[key] = data[key][:1]
        if not all(k in self.extractor.shared for k in ("P", "A", "G")):  # recomputed per batch together
            for key in ("P", "A", "G"):
                self.extractor.shared.pop(key, None)
        return data

    def _eliminate_equalities(self, data: dict, smallest: float) -> None:
        """A singular P: solve in the null space of the equalities, y = y0(b) + N w (y0 = A^+ b), which
        needs constant P, A and G and N'PN positive definite; else one line naming what fails."""
        singular = (f"objective: its quadratic part is singular (smallest eigenvalue {smallest:.2e})")
        shared = {}
        for key in ("P", "A", "G"):
            scale = max(1.0, float(data[key].abs().max()) if data[key].numel() else 0.0)
            shared[key] = torch.allclose(data[key][0], data[key][1], rtol=0, atol=1e-12 * scale)
        if not all(shared.values()) or data["A"].shape[1] == 0:
            raise InputError("problem", None, "", f"{singular}; route (b) needs P positive definite, or positive "
                             "definite on the null space of equality constraints whose matrices do not depend on the "
                             "parameters (e.g. pin a variable to a parameter with x[:, 0] == x0)")
        a = data["A"][0]
        _, values, vh = torch.linalg.svd(a)
        rank = int((values > 1e-10 * values.max().clamp_min(1e-300)).sum())
        null = vh[rank:].T  # (n, n - rank), orthonormal
        reduced = null.T @ data["P"][0] @ null
        curvature = torch.linalg.eigvalsh(reduced) if null.shape[1] else torch.ones(1, dtype=a.dtype)
        if float(curvature[0]) <= 1e-10 * max(1.0, float(curvature[-1])):
            raise InputError("problem", None, "", f"{singular}, also on the null space of the equality constraints "
                             f"(smallest eigenvalue there {float(curvature[0]):.2e}): some direction is free of cost "
                             "and of constraints; add a small quadratic term on the variables it moves")
        self.null_space, self.pinv_equalities = null, torch.linalg.pinv(a)
        for key in ("P", "A", "G"):
            self.extractor.shared[key] = data[key][:1]

    def _reduce(self, d: dict) -> tuple[dict, torch.Tensor]:
        """QP data in w (y = y0 + N w, y0 = A^+ b; no equality rows left) and y0 (B, n); the constant
        1/2 y0'Py0 + q'y0 joins c."""
        null, p, g = self.null_space, d["P"][:1], d["G"][:1]
        y0 = d["b"] @ self.pinv_equalities.T
        q = d["q"].expand(len(y0), -1)
        out = {"P": null.T @ p @ null, "q": (y0 @ p[0] + q) @ null, "A": p.new_zeros(1, 0, null.shape[1]),
               "b": y0.new_zeros(len(y0), 0), "G": g @ null, "h": d["h"] - y0 @ g[0].T,
               "c": d["c"] + 0.5 * ((y0 @ p[0]) * y0).sum(-1) + (q * y0).sum(-1)}
        return out, y0

    def qp(self, theta: torch.Tensor) -> tuple[QPDual, torch.Tensor]:
        """(QPDual, objective constant c) of the instances theta (B, P), float64; cached for the last theta.
        With eliminated equalities the QP is the one in w (see `_reduce`)."""
        return self._qp(theta)[:2]

    def _qp(self, theta: torch.Tensor) -> tuple[QPDual, torch.Tensor, torch.Tensor | None]:
        theta = theta.detach().double()
        return self._last.get(theta, lambda: self._build_qp(theta))

    def _build_qp(self, theta: torch.Tensor) -> tuple[QPDual, torch.Tensor, torch.Tensor | None]:
        split = self.split_theta(theta)
        params = {p.id: split[p.name()] for p in self.cvx_parameters}
        matrices = not all(k in self.extractor.shared for k in ("P", "A", "G"))
        d = self.extractor.data(params, len(theta), matrices=matrices)
        d = {k: self.extractor.shared.get(k, d[k]) if k in ("P", "A", "G", "q") else d[k] for k in d} | {
            k: self.extractor.shared[k] for k in ("P", "A", "G") if k in self.extractor.shared}
        y0 = None
        if self.null_space is not None:
            d, y0 = self._reduce(d)
        data = QPData(*(d[k] for k in ("P", "q", "A", "b", "G", "h")))
        restore = phase_one if self._interior is None else None  # automatic feasible points (phase I)
        if self.null_space is None and all(k in self.extractor.shared for k in ("P", "A", "G", "q")):
            if self._factors is None:
                self._factors = QPDual.factor(QPData(data.P, data.q, data.A, data.b[:1], data.G, data.h[:1]))
            dual = QPDual(data, self._factors, restore)
        else:
            dual = QPDual(data, restore=restore)
        return dual, d["c"], y0

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The negated dual function at z = E x (batched over queries), less its constant
        1/2 q'P^-1 q so that float32 queries keep the digits that vary; `objective` adds it back."""
        return self.qp(theta)[0].smooth(x @ self.coordinates.to(x).T, constant=False)

    def queries(self, x: torch.Tensor, offsets: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """g at x + c_m by the exact quadratic expansion (one gradient per instance)."""
        e = self.coordinates.to(x)
        return quadratic_queries(self.qp(theta)[0], x @ e.T, offsets @ e.T)

    def _dual_lipschitz(self, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([t.reshape(t.shape[0], -1) for t in theta.values()], dim=1)
        if self._shared_lipschitz is not None:
            return torch.full((len(flat),), self._shared_lipschitz, dtype=torch.float64)
        return self.scale ** 2 * self.qp(flat)[0].factors["lipschitz"].expand(len(flat))

    # ----- certificates and answers in primal terms ----------------------------------------
    def multipliers(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients -> dual multipliers z = E x (float64)."""
        return x.double() @ self.coordinates.T

    def interior(self, theta: torch.Tensor) -> torch.Tensor | None:
        """(B, n) the user's strictly feasible points for theta (float64), or None."""
        if self._interior is None:
            return None
        point = self._interior(self.split_theta(theta.double()))
        point = torch.as_tensor(np.asarray(point) if not isinstance(point, torch.Tensor) else point,
                                dtype=torch.float64).reshape(len(theta), -1)
        y0 = self._qp(theta)[2]
        return point if y0 is None else (point - y0) @ self.null_space  # in w when equalities are eliminated

    def primal(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """(B, n) closed-form primal answers of coefficients x."""
        dual, _, y0 = self._qp(theta)
        y = dual.recover(self.multipliers(x), self.interior(theta))[0]
        return y if y0 is None else y0 + y @ self.null_space.T

    def objective(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """f + g with g's constant: minus the dual value (the primal objective of the recovered answer,
        in the user's sign, is the certificate's `objective`)."""
        return self.f_value(x) + self.qp(theta)[0].smooth(x @ self.coordinates.to(x).T)

    def in_basis_program(self, theta: torch.Tensor) -> QPDualProgram:
        """The dual program in coefficients x (z = E x); certificate: relative duality gap and primal
        violation of the recovered answer; objective: the user's (sign, constant)."""
        dual, constant = self.qp(theta)
        flat = {"theta": theta}
        return dual.program(self.interior(theta), self.coordinates, self.inverse, self._dual_lipschitz(flat),
                            objective=lambda value: self.sign * (value + constant))

    def extra_answers(self, x: torch.Tensor, theta: torch.Tensor) -> list[dict[str, Any]]:
        """The recovered primal variables of each answer (one batched recovery)."""
        y, start, columns = self.primal(x, theta), 0, {}
        for name, shape in self.primal_layout:
            size = max(1, int(np.prod(shape)))
            columns[name] = y[:, start:start + size].reshape(len(y), *shape).cpu().numpy().tolist()
            start += size
        return [{"variables": {name: values[k] for name, values in columns.items()}} for k in range(len(y))]

    def infeasible(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: a phase-I solve (solvers/interior_point.py) ends with a negative margin."""
        out = []
        for start in range(0, len(theta), 4096):
            dual, _ = self.qp(torch.as_tensor(theta[start:start + 4096], dtype=torch.float64))
            out.append((phase_one(dual.data)[1] < -INFEASIBLE_MARGIN).numpy())
        return np.concatenate(out)

    def in_basis_optimum(self, theta: np.ndarray) -> np.ndarray:
        """(n, R) the dual optimum (interior point + KKT polish) in coefficients. An instance that the
        solve cannot certify (relative gap and violation <= 1e-6) is infeasible (the dual is unbounded)
        or numerically out of reach: refused with one line giving the count and the first index."""
        dual, _ = self.qp(torch.as_tensor(theta, dtype=torch.float64))
        _, z = solve_qp(dual.data, 1e-9)
        gap, violation = dual.certificate(z)
        bad = ~(torch.maximum(gap, violation) <= 1e-6)
        if bad.any():
            first = int(bad.nonzero()[0, 0])
            raise InputError("reference", None, "", f"{int(bad.sum())} of {len(z)} instances are infeasible or "
                             f"could not be solved (first: instance {first}, primal violation "
                             f"{float(violation[first]):.2e}, relative gap {float(gap[first]):.2e}); draw only "
                             "feasible instances in the sampler, or pass --drop-infeasible to generate")
        return (z @ self.inverse.T).numpy()


class HessianBound:
    """Lipschitz constant of the gradient of a quadratic CVXPY objective: lambda_max(P(theta)),
    computed once when P does not depend on the parameters (checked on two sampled instances)."""

    def __init__(self, problem, variables, parameters, sign: float, draw) -> None:
        self.extractor = QPExtractor(problem, variables, parameters, sign, constraints=False)
        self.parameters = parameters
        theta = draw(2, np.random.default_rng(0))
        hessian = self._hessian({p.name(): torch.as_tensor(np.asarray(theta[p.name()], dtype=np.float64))
                                 for p in parameters}, 2)
        scale = max(1.0, float(hessian.abs().max()))
        self.shared = (torch.linalg.eigvalsh(hessian[:1])[:, -1]
                       if torch.allclose(hessian[0], hessian[1], rtol=0, atol=1e-12 * scale) else None)
        if self.shared is not None:  # q and c alone are then read per batch
            empty = torch.zeros(1, 0, self.extractor.n, dtype=torch.float64)
            self.extractor.shared = {"P": hessian[:1], "A": empty, "G": empty}

    def quadratic(self, theta: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(P (B|1, n, n), q (B, n), c (B,), lambda_max(P) (B|1,)) of the objective 1/2 y'Py + q'y + c."""
        batch = len(next(iter(theta.values()))) if theta else 1
        params = {p.id: theta[p.name()].double() for p in self.parameters}
        data = self.extractor.data(params, batch, matrices=self.shared is None)
        lipschitz = self.shared if self.shared is not None else torch.linalg.eigvalsh(data["P"])[:, -1].clamp_min(1e-12)
        return data["P"], data["q"].expand(batch, -1), data["c"].reshape(-1).expand(batch), lipschitz

    def _hessian(self, theta: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        params = {p.id: theta[p.name()].double() for p in self.parameters}
        return self.extractor.data(params, batch)["P"]

    def __call__(self, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = len(next(iter(theta.values()))) if theta else 1
        if self.shared is not None:
            return self.shared.expand(batch)
        return torch.linalg.eigvalsh(self._hessian(theta, batch))[:, -1].clamp_min(1e-12)
