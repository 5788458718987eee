"""What every CVXPY front shares: the statement of what is supported, one-line refusals, the checks
of a problem (DCP, DPP, variable attributes, unique names) and the declared parameters."""

from __future__ import annotations

import math

from ..errors import InputError
from .cvxpy_expressions import describe
from .parameters import Parameter

__all__ = ["SUPPORTED", "check_problem", "parameter_specs", "refuse"]

SUPPORTED = ("supported: (a) a smooth objective (+ c*norm1(x)) with simple-set constraints on whole variables "
             "(x >= l, x <= u, abs(x) <= c, norm_inf(x) <= r, sum(x) == r with x >= 0, norm(x, 2) <= r; "
             "constant data), "
             "or (b) a strongly convex QP with affine equality and inequality constraints (abs(e) <= c allowed), "
             "P positive definite or positive definite on the null space of constant equalities")


def refuse(what: str, detail: str) -> InputError:
    """The one-line refusal of a problem: `problem: WHAT: DETAIL` (exit 2 at the command line)."""
    return InputError("problem", None, "", f"{what}: {detail}")



def parameter_specs(problem) -> tuple[list, tuple[Parameter, ...]]:
    """(CVXPY parameters sorted by id, their declared Parameters: domains from the sign attributes)."""
    params = sorted(problem.parameters(), key=lambda p: p.id)
    names = [p.name() for p in params]
    if len(set(names)) != len(names):
        raise refuse("parameters", "parameter names must be unique (give each cvxpy.Parameter a name=)")
    specs = []
    for p in params:
        low = 0.0 if p.attributes.get("nonneg") or p.attributes.get("pos") else -math.inf
        high = 0.0 if p.attributes.get("nonpos") or p.attributes.get("neg") else math.inf
        specs.append(Parameter(p.name(), low=low, high=high, low_open=bool(p.attributes.get("pos")),
                               high_open=bool(p.attributes.get("neg")), shape=tuple(p.shape)))
    return params, tuple(specs)


def check_problem(problem) -> None:
    """Refuse (InputError) a problem that is not DCP and DPP, or whose variables are unsupported."""
    import cvxpy as cp

    if not isinstance(problem, cp.Problem):
        raise refuse("problem", f"expected a cvxpy.Problem, got {type(problem).__name__}")
    parts = [("objective", problem.objective)] + [(f"constraint `{describe(c)}`", c) for c in problem.constraints]
    for what, part in parts:
        if not part.is_dcp():
            raise refuse(what, "is not convex under CVXPY's DCP rules")
    for what, part in parts:
        if not part.is_dcp(dpp=True):
            raise refuse(what, "is not DPP-compliant (parameters must enter affinely, see CVXPY's DPP rules)")
    for v in problem.variables():
        unsupported = sorted(k for k, on in v.attributes.items()
                             if on and k not in ("nonneg", "nonpos", "pos", "neg", "bounds"))
        if unsupported:
            raise refuse(f"variable {v.name()}", f"attribute {unsupported[0]} is not supported ({SUPPORTED})")
    names = [v.name() for v in problem.variables()]
    if len(set(names)) != len(names):
        raise refuse("variables", "variable names must be unique (give each cvxpy.Variable a name=)")
