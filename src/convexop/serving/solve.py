"""Answer new instances with a trained run: values, coefficients, certificate, status.

Answers are repeatable: the GEO starts from x_0 = 0 (the mean of the authors' random start) unless
asked otherwise. Each answer carries the fields and `status` of the answer vocabulary
(serving/answers.py): on exact families the certificate of the in-basis program (objective,
residual, gap, violation) and `optimal` when it is within the tolerance (`--polish TOL`, else
`tol`, default 1e-6), `optimal_inaccurate` otherwise; `approximate` on supervised families; `error`
with null values and a `reason` for a non-finite answer; `infeasible` and `unbounded` (null values, a
`reason`) for instances the program proves so (QP duals: phase I; quadratic route (a): a verified
recession direction, solvers/unbounded.py), which are not polished. With `polish_tol` the model's answers are
polished first (solvers/polish.py) and `iterations` counts the polish's steps.
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.base import OperatorModel
from ..solvers.polish import DEFAULT_ITERATIONS, check_polish_settings
from .answers import DEFAULT_TOL, certificate_fields, check_tolerance, statuses
from .instances import instance_chunks, renumber_error
from .polish import check_polishable, polish_answers

__all__ = ["solve_file", "solve_instances"]


def solve_file(model: OperatorModel, instances_path: str | Path, out: str | Path, start: str = "zero",
               batch: int = 4096, polish_tol: float | None = None,
               polish_iterations: int = DEFAULT_ITERATIONS, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """Stream IN.json -> OUT.json a batch at a time with bounded memory (one batch of instances and
    answers); the file is byte-for-byte `json.dumps(solve_instances(model, read_instances(...)))`.
    OUT.json is written under a temporary name and renamed at the end, so a bad instance anywhere
    (named by its index in the file) leaves no output. Returns n, status counts and the total
    polishing iterations."""
    from ..files import atomic_output

    summary: dict[str, Any] = {"n": 0, "status": {}, "iterations": 0}
    with atomic_output(out) as tmp, open(tmp, "x", encoding="utf-8") as stream:
        head = {"family": model.family.name, "model": model.model_name}
        stream.write(json.dumps(head)[:-1] + ', "instances": [')
        for chunk in instance_chunks(instances_path, batch):
            try:
                answers = solve_instances(model, chunk, start=start, batch=batch, polish_tol=polish_tol,
                                          polish_iterations=polish_iterations, tol=tol)["instances"]
            except InputError as error:
                raise renumber_error(error, summary["n"]) from None
            stream.write((", " if summary["n"] else "") + json.dumps(answers, allow_nan=False)[1:-1])
            summary["n"] += len(answers)
            for answer in answers:
                summary["status"][answer["status"]] = summary["status"].get(answer["status"], 0) + 1
                summary["iterations"] += int(answer.get("iterations", 0))
        if summary["n"] == 0:
            raise InputError("instances", [], "a non-empty list of instances")
        stream.write("]}")
    return summary


@contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector while thousands of answer dicts and lists are built
    (they hold no reference cycles): otherwise its full passes re-walk every object already alive,
    e.g. the answers of earlier calls the caller keeps, and dominate the time per instance."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def solve_instances(model: OperatorModel, instances: list[dict[str, Any]], start: str = "zero",
                    batch: int = 4096, polish_tol: float | None = None,
                    polish_iterations: int = DEFAULT_ITERATIONS, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """OUT.json's content for a list of instances (dicts of parameter name -> value)."""
    with _collector_paused():
        return _solve_instances(model, instances, start, batch, polish_tol, polish_iterations, tol)


def _solve_instances(model: OperatorModel, instances: list[dict[str, Any]], start: str, batch: int,
                     polish_tol: float | None, polish_iterations: int, tol: float) -> dict[str, Any]:
    family = model.family
    theta_np = family.theta_from_instances(instances)
    if polish_tol is not None:
        check_polish_settings(polish_tol, polish_iterations)
        check_polishable(family)
    check_tolerance(tol)
    certify_tol = tol if polish_tol is None else polish_tol
    model.set_inference(start=start)
    model.eval()
    device = next(model.parameters()).device
    points = np.asarray(family.points).tolist()
    answers = []
    for begin in range(0, len(theta_np), batch):
        theta = torch.as_tensor(theta_np[begin:begin + batch], dtype=torch.float32, device=device)
        with torch.no_grad():
            coefficients = model.coefficients(theta) if model.has_coefficients else None
            values = family.decode(coefficients) if coefficients is not None else model.values(theta)
        if coefficients is None and family.exact:  # values-only models: certify their projection
            coefficients = family.project(values.double())
        iterations = certificate = None
        if coefficients is not None:
            x64 = family.finalise(coefficients)
            t64 = torch.as_tensor(theta_np[begin:begin + batch], dtype=torch.float64, device=device)
            finite = torch.isfinite(x64).all(-1)
            if polish_tol is not None and bool(finite.any()):
                polished = polish_answers(family, x64[finite], t64[finite], polish_tol, polish_iterations)
                x64 = x64.clone()
                x64[finite] = polished.x
                iterations = torch.zeros(len(x64), dtype=torch.int64)
                iterations[finite.cpu()] = polished.iterations.cpu()
                iterations = iterations.tolist()
            coefficients, values = x64, family.decode(x64)
            if family.exact:
                certificate = family.certificate(x64, t64)
        finite = torch.isfinite(values.double()).all(-1)
        if coefficients is not None:
            finite &= torch.isfinite(coefficients).all(-1)
        finite = finite.cpu().numpy()
        fields = certificate_fields(certificate, len(theta))
        status = statuses(family.exact, certificate, finite, certify_tol)
        finite &= np.array([state not in ("infeasible", "unbounded") for state, _ in status], dtype=bool)  # no answer
        coefficient_rows = coefficients.double().cpu().numpy().tolist() if coefficients is not None else None
        value_rows = values.double().cpu().numpy().tolist()
        params = family.instances_from_theta(theta_np[begin:begin + batch])
        extras = [{} for _ in range(len(theta))]
        if coefficients is not None and finite.any():  # one batched call (e.g. one primal recovery)
            rows = np.flatnonzero(finite)
            t64 = torch.as_tensor(theta_np[begin + rows], dtype=torch.float64, device=device)
            for k, extra in zip(rows, family.extra_answers(coefficients[torch.as_tensor(rows)].double(), t64)):
                extras[k] = extra
        for k in range(len(theta)):
            ok = bool(finite[k])
            answer = {
                "params": params[k],
                "coefficients": coefficient_rows[k] if ok and coefficient_rows is not None else None,
                "basis": family.labels,
                "points": points,
                "values": value_rows[k] if ok else None,
                **fields[k],
                "status": status[k][0],
            }
            if status[k][1]:
                answer["reason"] = status[k][1]
            if iterations is not None:
                answer["iterations"] = int(iterations[k])
            answers.append(answer | extras[k])
    return {"family": family.name, "model": model.model_name, "instances": answers}
