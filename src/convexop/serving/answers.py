"""The answer vocabulary: the fields and `status` of every answer that `solve`, `api.solve` and
`evaluate` give, in CVXPY's words.

status:
- `optimal`: certified within the tolerance (the `--polish TOL`, or the certification tolerance,
  default 1e-6): the certificate measure (solvers/program.py: max(gap or residual, violation)) <= tol;
- `optimal_inaccurate`: a finite answer whose certificate is above the tolerance (the usual raw
  amortised answer; polish it to certify it);
- `infeasible`: the instance's constraints admit no point (QP duals: a phase-I solve, which maximises the
  smallest constraint margin, ends below zero); values, coefficients and variables are null;
- `unbounded`: the instance's objective is proven unbounded below; values, coefficients and variables are
  null. No built-in or route (b) program can be (their objectives are strongly convex or their sets
  bounded). Route (a) programs with a quadratic objective (P, q) can: an instance is labelled when a
  direction d of the recession cone of its set with P d = 0 and q'd + w||d_L1||_1 < 0 is found and
  verified to relative tolerances (solvers/unbounded.py); other objectives (route (a) non-quadratic,
  from_torch) are never labelled here (no finite number of evaluations proves it);
- `error`: non-finite or failed; values are null and `reason` says why;
- `approximate`: supervised families (heat-pde, utility-max), whose target is not argmin f + g, so
  no certificate applies.
Fields (exact families; null where they do not apply): `objective` (the program's objective at the
answer; QP duals: the primal objective of the recovered answer), `residual` (the prox-gradient
residual of the in-basis program, units of x), `gap` (a relative objective-gap bound where the
program kind has one: the duality gap of QP duals), `violation` (max primal constraint violation).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..solvers.program import Certificate

__all__ = ["DEFAULT_TOL", "STATUSES", "certificate_fields", "check_tolerance", "statuses"]

DEFAULT_TOL = 1e-6
STATUSES = ("optimal", "optimal_inaccurate", "infeasible", "unbounded", "error", "approximate")
FIELDS = ("objective", "residual", "gap", "violation")
INFEASIBLE_REASON = ("no point satisfies the constraints: a phase-I solve (maximise the smallest constraint "
                     "margin) ends with a negative margin; values are null")
UNBOUNDED_REASON = ("the objective is unbounded below: a direction d of the recession cone of the feasible set "
                    "with P d = 0 and q'd (+ the L1 terms' slope) < 0 was found and verified; values are null")


def check_tolerance(tol: float, field: str = "--tol") -> None:
    """Raise InputError naming `field` unless tol is a finite number > 0."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise InputError(field, tol, "finite numbers > 0")


def _column(value: torch.Tensor | None, n: int) -> list[float | None]:
    if value is None:
        return [None] * n
    array = value.detach().double().cpu().numpy()
    return [float(v) if math.isfinite(v) else None for v in array]


def certificate_fields(certificate: Certificate | None, n: int) -> list[dict[str, float | None]]:
    """Per-instance {objective, residual, gap, violation} (strict JSON: non-finite -> None)."""
    if certificate is None:
        return [dict.fromkeys(FIELDS) for _ in range(n)]
    columns = {name: _column(getattr(certificate, name), n) for name in FIELDS}
    return [{name: columns[name][k] for name in FIELDS} for k in range(n)]


def statuses(exact: bool, certificate: Certificate | None, finite: np.ndarray, tol: float) -> list[tuple[str, str]]:
    """(status, reason) per instance: finite (n,) says whether the answer's coefficients and values are
    finite; exact families are `optimal` when certified at tol, else `optimal_inaccurate`."""
    n = len(finite)
    measure = None if certificate is None else certificate.measure.detach().double().cpu().numpy()
    infeasible = (np.zeros(n, dtype=bool) if certificate is None or certificate.infeasible is None
                  else certificate.infeasible.detach().cpu().numpy())
    unbounded = (np.zeros(n, dtype=bool) if certificate is None or certificate.unbounded is None
                 else certificate.unbounded.detach().cpu().numpy())
    objective = None if certificate is None else certificate.objective.detach().double().cpu().numpy()
    out = []
    for k in range(n):
        if unbounded[k]:  # a property of the instance: whatever the answer, there is no minimiser to give
            out.append(("unbounded", UNBOUNDED_REASON))
        elif not finite[k]:
            out.append(("error", "the model's answer is not finite (coefficients or values are NaN or infinite)"))
        elif not exact:
            out.append(("approximate", ""))
        elif infeasible[k]:
            out.append(("infeasible", INFEASIBLE_REASON))
        elif measure is None or not math.isfinite(measure[k]):
            out.append(("error", "the certificate of the answer is not finite"))
        elif measure[k] <= tol:
            out.append(("optimal", ""))
        elif not math.isfinite(objective[k]):
            out.append(("optimal_inaccurate", "the answer is outside the domain of the objective"))
        else:
            out.append(("optimal_inaccurate", ""))
    return out
