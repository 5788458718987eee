"""`convexop.from_cvxpy(problem, sampler)`: a DPP CVXPY problem with Parameters -> an exact family.

Two routes turn the problem into min f + g_theta:
(a) a smooth convex objective (plus optional terms c * norm1(variable), c >= 0 constant) and
    constraints that are simple sets on whole variables, with constant data: bounds x >= l, x <= u
    (and the nonneg/nonpos/bounds variable attributes, abs(x) <= c and norm_inf(x) <= r, all boxes that
    combine), the simplex sum(x) == r with x >= 0, and the ball norm(x, 2) <= r. f = the separable
    sum of their prox (indicators, L1),
    g = the objective evaluated in torch; coefficients are the variables themselves.
(b) a strongly convex QP (quadratic objective, P positive definite, affine equalities and
    inequalities; any data may depend on parameters): the Lagrangian dual over z = (lambda, mu >= 0)
    (solvers/qp.py). The GEO works on the dual, the primal answer is recovered in
    closed form, the certificate is the duality gap and the violation the primal one; polishing
    solves the KKT system of the predicted active set first.
Anything else is refused with one line naming the offending expression or constraint.

The QP data of route (b) (P, q, A, b, G, h) are read off the expressions by evaluating them at 0
and at the unit vectors (exact for quadratic/affine expressions); data that do not change between
two sampled instances are computed once and shared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..prox import L1, Box, L2Ball, Prox, SeparableSum, Simplex, Zero
from ..solvers.program import CompositeProgram
from ..solvers.quadratic import QuadraticProgram, quadratic_queries, quadratic_value
from ..solvers.unbounded import proven_unbounded
from .cvxpy_expressions import Unsupported, describe, evaluate, is_smooth
from .cvxpy_problems import SUPPORTED, check_problem, parameter_specs, refuse
from .from_cvxpy_qp import CvxpyQPFamily, HessianBound, qp_refusal
from .memo import LastBatch
from .user import UserFamily, as_sampler

__all__ = ["from_cvxpy", "refuse"]

class NotSimpleSets(InputError):
    """Route (a) does not apply because of the constraints (route (b) may)."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__("problem", None, "", f"{what}: {detail}")


def _kind(expr) -> str:
    return type(expr).__name__


def _constant(expr) -> np.ndarray | None:
    """The value of an expression without variables or parameters, else None."""
    if expr.variables() or expr.parameters():
        return None
    value = expr.value
    return np.asarray(value.toarray() if hasattr(value, "toarray") else value, dtype=np.float64)


class _Blocks:
    """Per-variable simple sets collected from the constraints (route a)."""

    def __init__(self, variables) -> None:
        self.lower = {v.id: np.full(v.shape, -np.inf) for v in variables}
        self.upper = {v.id: np.full(v.shape, np.inf) for v in variables}
        self.total = {}  # id -> r of sum(x) == r
        self.ball = {}  # id -> (p, r)
        self.l1 = {}  # id -> weight
        for v in variables:
            for key, bound, pick in (("nonneg", 0.0, "lower"), ("pos", 0.0, "lower"),
                                     ("nonpos", 0.0, "upper"), ("neg", 0.0, "upper")):
                if v.attributes.get(key):
                    getattr(self, pick)[v.id] = np.broadcast_to(bound, v.shape).copy()
            bounds = v.attributes.get("bounds")
            if bounds is not None:
                low, high = (np.broadcast_to(np.asarray(b if b is not None else s * np.inf, dtype=np.float64), v.shape)
                             for b, s in zip(bounds, (-1, 1)))
                self.lower[v.id] = np.maximum(self.lower[v.id], low)
                self.upper[v.id] = np.minimum(self.upper[v.id], high)

    def add(self, constraint) -> bool:
        """Record a simple-set constraint; False when it is not one."""
        kind = _kind(constraint)
        if kind == "Inequality":
            lhs, rhs = constraint.args
            if _kind(lhs) == "Variable" and _constant(rhs) is not None:
                self.upper[lhs.id] = np.minimum(self.upper[lhs.id], np.broadcast_to(_constant(rhs), lhs.shape))
                return True
            if _kind(rhs) == "Variable" and _constant(lhs) is not None:
                self.lower[rhs.id] = np.maximum(self.lower[rhs.id], np.broadcast_to(_constant(lhs), rhs.shape))
                return True
            bound = _constant(rhs)
            if _kind(lhs) in ("abs", "norm_inf") and _kind(lhs.args[0]) == "Variable" and bound is not None \
                    and (_kind(lhs) == "abs" or bound.size == 1):  # |x| <= c, ||x||_inf <= c: a box
                x = lhs.args[0]
                c = np.broadcast_to(bound, x.shape)
                self.lower[x.id] = np.maximum(self.lower[x.id], -c)
                self.upper[x.id] = np.minimum(self.upper[x.id], c)
                return True
            if _kind(lhs) in ("Pnorm", "PnormApprox") and _kind(lhs.args[0]) == "Variable":
                p = float(lhs.get_data()[0])
                radius = _constant(rhs)
                if p in (2.0, math.inf) and radius is not None and radius.size == 1 and lhs.args[0].id not in self.ball:
                    self.ball[lhs.args[0].id] = (p, float(radius))
                    return True
            return False
        if kind == "Equality":
            for a, b in (constraint.args, constraint.args[::-1]):
                if _kind(a) == "Sum" and a.get_data()[0] is None and _kind(a.args[0]) == "Variable" \
                        and _constant(b) is not None and _constant(b).size == 1 and a.args[0].id not in self.total:
                    self.total[a.args[0].id] = float(_constant(b))
                    return True
        return False

    def prox(self, variable) -> Prox | str:
        """The prox of the variable's set, or a message why the sets do not combine."""
        i = variable.id
        lower, upper = self.lower[i].reshape(-1), self.upper[i].reshape(-1)
        boxed = np.isfinite(lower).any() or np.isfinite(upper).any()
        kinds = [k for k, on in (("bounds", boxed), ("sum", i in self.total), ("ball", i in self.ball),
                                 ("norm1 term", i in self.l1)) if on]
        if i in self.total:
            if not (np.all(lower == 0) and np.all(np.isinf(upper))) or len(kinds) != 2:
                return "sum(x) == r is supported together with x >= 0 only (the simplex)"
            if self.total[i] <= 0:
                return "the simplex needs sum(x) == r with r > 0"
            return Simplex(self.total[i])
        if len(kinds) > 1:
            return f"{' and '.join(kinds)} on the same variable do not combine into one supported set"
        if i in self.ball:
            p, radius = self.ball[i]
            return L2Ball(radius) if p == 2 else Box(-radius, radius)
        if i in self.l1:
            return L1(self.l1[i])
        if boxed:
            if np.any(lower > upper):
                return "empty box (a lower bound exceeds an upper bound)"
            return Box(torch.as_tensor(lower), torch.as_tensor(upper))
        return Zero()


def _terms(expr) -> list:
    if _kind(expr) == "AddExpression":
        return [t for a in expr.args for t in _terms(a)]
    return [expr]


def _l1_term(term) -> tuple[Any, float] | None:
    """(variable, weight) of a term c * norm1(variable) with constant c >= 0, else None."""
    weight = 1.0
    if _kind(term) in ("multiply", "MulExpression"):
        left, right = term.args
        constant = _constant(left)
        if constant is None or constant.size != 1:
            return None
        weight, term = float(constant), right
    if _kind(term) == "norm1" and _kind(term.args[0]) == "Variable" and term.get_data()[0] is None and weight >= 0:
        return term.args[0], weight
    return None


QUADRATIC_DATA_LIMIT = 2 ** 25  # float64 entries of a batch's per-instance P (256 MB) read at once


class CvxpyFamily(UserFamily):
    """Route (a): the family's coordinates are the CVXPY variables (flattened in C order)."""

    def __init__(self, problem, sampler, name: str, training: dict | None) -> None:
        check_problem(problem)
        variables = sorted(problem.variables(), key=lambda v: v.id)
        cvx_params, specs = parameter_specs(problem)
        sign = 1.0 if type(problem.objective).__name__ == "Minimize" else -1.0
        blocks = _Blocks(variables)
        smooth_terms = []
        for term in _terms(problem.objective.expr):
            l1 = _l1_term(term) if sign > 0 else None
            if l1 is not None and l1[0].id not in blocks.l1:
                blocks.l1[l1[0].id] = l1[1]
            elif is_smooth(term):
                smooth_terms.append(term)
            else:
                raise refuse(f"objective term `{describe(term)}`",
                             "is not smooth (the only non-smooth objective terms supported are c * norm1(variable), "
                             "c >= 0 constant; use a constraint or from_torch with a prox)")
        for constraint in problem.constraints:
            if not blocks.add(constraint):
                raise NotSimpleSets(f"constraint `{describe(constraint)}`",
                                    f"is not a simple set on a whole variable ({SUPPORTED})")
        proxes = []
        for v in variables:
            prox = blocks.prox(v)
            if isinstance(prox, str):
                raise NotSimpleSets(f"variable {v.name()}", prox)
            proxes.append((max(1, int(np.prod(v.shape))), prox))
        self.problem, self.cvx_variables, self.cvx_parameters, self.sign = problem, variables, cvx_params, sign
        self.smooth_terms = smooth_terms
        layout = [(v.name(), tuple(v.shape)) for v in variables]
        f = proxes[0][1] if len(proxes) == 1 else SeparableSum(proxes)
        draw = as_sampler(sampler, specs)
        lipschitz = None
        expr = sign * problem.objective.expr
        if not blocks.l1 and expr.is_quadratic() and not _piecewise(expr):  # a constant Hessian bounds it
            lipschitz = HessianBound(problem, variables, cvx_params, sign, draw)
        self._quadratic_data = LastBatch()
        self._unbounded_proofs = LastBatch()
        super().__init__(name, layout, specs, self._objective, f, draw,
                         lipschitz=lipschitz, training=training, description=str(problem))
        self.route = "simple sets"
        self.cross_checked: float | None = None
        self.reference_method = "in-basis optimum by batched FISTA (restart, backtracking) to residual <= 1e-8"

    def _quadratic(self, theta: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """(P, q, c, lambda_max(P)) of a quadratic objective (no L1 term) for the batch theta, read once
        (`HessianBound.quadratic`) and kept for the last batch (`LastBatch`: a polish and the certificate
        that follows it read one batch); None for other objectives or when a per-instance P would not
        fit QUADRATIC_DATA_LIMIT."""
        bound = self._lipschitz
        if not isinstance(bound, HessianBound) or (bound.shared is None
                                                   and len(theta) * self.rank ** 2 > QUADRATIC_DATA_LIMIT):
            return None
        theta = theta.detach().double()
        return self._quadratic_data.get(theta, lambda: bound.quadratic(self.split_theta(theta)))

    def in_basis_program(self, theta: torch.Tensor) -> CompositeProgram:
        """A quadratic objective: a `QuadraticProgram` (closed-form gradient and Hessian, subsets slice
        its data); else the generic program (g evaluated through the CVXPY expressions)."""
        data = self._quadratic(theta)
        if data is None:
            return super().in_basis_program(theta)
        nonsmooth = None if isinstance(self.f, Zero) else self.f
        # the proof of unboundedness is kept for the last batch, like its data (a polish and the certificate
        # that follows it build two programs of one batch)
        proof = lambda: self._unbounded_proofs.get(theta.detach().double(),
                                                   lambda: proven_unbounded(data[0], data[1], nonsmooth))
        return QuadraticProgram(*data[:3], nonsmooth, data[3], newton=self.newton_polish, proof=proof)

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The smooth objective at x (batch, R) or (batch, M, R): a quadratic one from its data (P, q, c),
        else through the CVXPY expressions."""
        data = self._quadratic(theta)
        if data is None:
            return super().g(x, theta)
        return quadratic_value(*data[:3], x)

    def queries(self, x: torch.Tensor, offsets: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The GEO's queries g(x + c_m): for a quadratic objective by its exact expansion (one gradient per
        instance, no expression-tree walk at M points); else through the CVXPY expressions."""
        data = self._quadratic(theta)
        if data is None:
            return super().queries(x, offsets, theta)
        return quadratic_queries(*data[:3], x, offsets)

    def program(self, theta: torch.Tensor) -> CompositeProgram:
        program = self.in_basis_program(theta.detach().double())
        return program if isinstance(program, QuadraticProgram) else super().program(theta)

    def _objective(self, x: torch.Tensor, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        blocks = self.split_variables(x)
        values = {v.id: blocks[v.name()] for v in self.cvx_variables}
        params = {p.id: theta[p.name()] for p in self.cvx_parameters}
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for term in self.smooth_terms:
            try:
                value = evaluate(term, values, params, x.dtype, x.device)
            except Unsupported as error:
                raise refuse("objective", str(error)) from None
            total = total + value.reshape(value.shape[0], -1).sum(1)
        return self.sign * total

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        """Batched FISTA to 1e-8; the first call also solves up to 3 instances with CVXPY (Clarabel)
        and refuses to go on when the objectives differ by more than 1e-5 relative (recorded in
        `reference_method`, which data sets store)."""
        answers = super().reference(theta, progress)
        if self.cross_checked is None and len(theta):
            check = self.cross_check(theta[:3])
            self.cross_checked = check["max_relative_objective_difference"]
            self.reference_method += (f"; cross-checked against CVXPY (Clarabel) on {min(3, len(theta))} instances: "
                                      f"max relative objective difference {self.cross_checked:.1e}")
            if not self.cross_checked <= 1e-5:
                raise InputError("reference", None, "", f"batched FISTA and CVXPY disagree on {self.name} "
                                 f"(relative objective difference {self.cross_checked:.1e} > 1e-5)")
        return answers

    def cvxpy_statuses(self, theta: np.ndarray, solver: str | None = "CLARABEL") -> list[str]:
        """CVXPY's status of each instance theta (n, P) (one solve each)."""
        out = []
        for row in theta:
            for p, value in zip(self.cvx_parameters, self.split_theta(torch.as_tensor(row[None])).values()):
                p.value = value[0].numpy()
            self.problem.solve(solver=solver)
            out.append(self.problem.status)
        return out

    def unbounded_by_cross_check(self, theta: np.ndarray) -> np.ndarray:
        """(n,) bool: CVXPY (Clarabel) reports the instance `unbounded` (asked only about instances whose
        reference solve did not converge; objectives without a proof, e.g. logistic or exponential)."""
        return np.array([status == "unbounded" for status in self.cvxpy_statuses(theta)], dtype=bool)

    def cross_check(self, theta: np.ndarray, solver: str | None = "CLARABEL") -> dict[str, float]:
        """Solve the instances theta (n, P) with CVXPY and compare objectives with our reference:
        max relative objective difference and max distance between the minimisers."""
        ours = torch.as_tensor(super().reference(theta)) / self.scale
        t = torch.as_tensor(theta, dtype=torch.float64)
        ours_value = self.objective(ours, t).numpy()
        worst_gap = worst_distance = 0.0
        for k, row in enumerate(theta):
            for p, value in zip(self.cvx_parameters, self.split_theta(torch.as_tensor(row[None])).values()):
                p.value = value[0].numpy()
            self.problem.solve(solver=solver)
            theirs = np.concatenate([np.asarray(v.value, dtype=np.float64).reshape(-1) for v in self.cvx_variables])
            value = self.sign * self.problem.value
            worst_gap = max(worst_gap, abs(ours_value[k] - value) / max(1.0, abs(value)))
            worst_distance = max(worst_distance, float(np.abs(theirs - ours[k].numpy()).max()))
        return {"max_relative_objective_difference": worst_gap, "max_distance": worst_distance}


def _piecewise(expr) -> bool:
    """Whether expr holds an atom CVXPY calls quadratic whose Hessian is not constant (huber: quadratic
    near 0, linear beyond), so that the Hessian read at one point does not bound the others."""
    return _kind(expr) == "huber" or any(_piecewise(arg) for arg in expr.args)


def split_abs_constraints(problem):
    """The problem with every `abs(e) <= c` (e affine, c constant or affine) written as the two affine
    inequalities e <= c and -e <= c, so that route (b) takes it; the same variables and parameters."""
    import cvxpy as cp

    constraints, changed = [], False
    for constraint in problem.constraints:
        lhs = constraint.args[0] if _kind(constraint) == "Inequality" else None
        if lhs is not None and _kind(lhs) == "abs" and lhs.args[0].is_affine() and constraint.args[1].is_affine():
            inner, bound = lhs.args[0], constraint.args[1]
            constraints += [inner <= bound, -inner <= bound]
            changed = True
        else:
            constraints.append(constraint)
    return cp.Problem(problem.objective, constraints) if changed else problem


def from_cvxpy(problem, sampler, *, name: str = "cvxpy", training: dict | None = None, interior=None):
    """A family from a DPP CVXPY problem and a sampler of its parameters (module docstring).

    interior (route b only, optional): theta dict -> (batch, n) strictly feasible primal points
    (variables flattened in order); the closed-form recovery then steps from there towards the dual's
    primal answer as far as the inequalities allow, so every answer is feasible."""
    try:
        family = CvxpyFamily(problem, sampler, name, training)
    except NotSimpleSets as simple_error:
        problem = split_abs_constraints(problem)
        reason = qp_refusal(problem)
        if reason is not None:  # the objective rules route (b) out: route (a)'s reason is the one to give
            raise (simple_error if reason[0] == "objective" else refuse(*reason)) from None
        return CvxpyQPFamily(problem, sampler, name, training, interior)
    if interior is not None:
        raise refuse("interior", "applies to route (b) only (a QP solved through its dual); this problem is route (a)")
    return family
