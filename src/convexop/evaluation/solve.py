"""Answer new instances with a trained run: values, coefficients, objective, certificate, status.

Answers are repeatable: the GEO starts from x_0 = 0 (the mean of the authors' random start) unless
asked otherwise. On exact families `residual` is the family's certificate (the prox-gradient residual
of the in-basis program, zero exactly at its optimum) and `violation` the distance to the constraint
set; on supervised families (heat-pde) both are null. With `polish=TOL` the model's answers are
polished (evaluation/polish.py): `status` is "polished" (residual <= TOL) or "not_converged" (the
budget ran out first), and `iterations` counts the forward-backward steps; otherwise status is "ok".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.base import OperatorModel
from .polish import DEFAULT_ITERATIONS, check_polishable, check_settings, polish


def read_instances(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise InputError("--instances", str(path), "", "file not found")
    try:
        payload = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError("--instances", str(path), "", f"not valid JSON ({error.__class__.__name__})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InputError("instances", None, "", 'expected {"instances": [{...}, ...]} at the top level')
    if not payload["instances"]:
        raise InputError("instances", [], "a non-empty list of instances")
    return payload["instances"]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def solve_instances(model: OperatorModel, instances: list[dict[str, Any]], start: str = "zero",
                    batch: int = 4096, polish_tol: float | None = None,
                    polish_iterations: int = DEFAULT_ITERATIONS) -> dict[str, Any]:
    family = model.family
    theta_np = family.theta_from_instances(instances)
    if polish_tol is not None:
        check_settings(polish_tol, polish_iterations)
        check_polishable(family, torch.as_tensor(theta_np[:1], dtype=torch.float64))
    if hasattr(model, "set_inference"):
        model.set_inference(start=start)
    model.eval()
    device = next(model.parameters()).device
    points = np.asarray(family.points).tolist()
    answers = []
    for begin in range(0, len(theta_np), batch):
        theta = torch.as_tensor(theta_np[begin:begin + batch], dtype=torch.float32, device=device)
        with torch.no_grad():
            coefficients = model.coefficients(theta) if hasattr(model, "coefficients") else None
            values = family.decode(coefficients) if coefficients is not None else model.values(theta)
        if coefficients is None and polish_tol is not None:  # values-only models: start from the projection
            coefficients = family.project(values.double())
        status, iterations = ["ok"] * len(theta), None
        objective = residual = violation = None
        if coefficients is not None:
            x64 = coefficients.double()
            t64 = torch.as_tensor(theta_np[begin:begin + batch], dtype=torch.float64, device=device)
            if polish_tol is not None:
                polished = polish(family, x64, t64, polish_tol, polish_iterations)
                x64, status, iterations = polished.x, polished.status, polished.iterations.tolist()
                coefficients, values = x64, family.decode(x64)
            objective = family.objective(x64, t64).detach().cpu().numpy()
            residual = family.certificate(x64, t64)
            residual = None if residual is None else residual.cpu().numpy()
            program = family.program(t64)
            violation = None if program is None else program.violation(x64).cpu().numpy()
        for k in range(len(theta)):
            row = theta_np[begin + k]
            answer = {
                "params": family.instance_from_theta(row),
                "coefficients": None if coefficients is None else coefficients[k].double().tolist(),
                "basis": family.labels,
                "points": points,
                "values": values[k].double().cpu().tolist(),
                "objective": None if objective is None else _finite_or_none(objective[k]),
                "residual": None if residual is None else float(residual[k]),
                "violation": None if violation is None else float(violation[k]),
                "status": status[k],
            }
            if iterations is not None:
                answer["iterations"] = int(iterations[k])
            answers.append(answer | family.extra_answer(
                coefficients[k:k + 1].double() if coefficients is not None else None,
                torch.as_tensor(row[None], dtype=torch.float64, device=device)))
    return {"family": family.name, "model": model.model_name, "instances": answers}
