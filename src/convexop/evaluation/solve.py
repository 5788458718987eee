"""Answer new instances with a trained run: values, coefficients, objective, certificate, status.

Answers are repeatable: the GEO starts from x_0 = 0 (the mean of the authors' random start) unless
asked otherwise. On exact families `residual` is the prox-gradient residual of the in-basis program
(zero exactly at its optimum); on supervised families (heat-pde) it is null.
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
                    batch: int = 4096) -> dict[str, Any]:
    family = model.family
    theta_np = family.theta_from_instances(instances)
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
        if coefficients is not None:
            x64, t64 = coefficients.double(), theta.double()
            objective = family.objective(x64, t64).detach().cpu().numpy()
            residual = family.certificate(x64, t64)
            residual = None if residual is None else residual.cpu().numpy()
        else:
            objective, residual = None, None
        for k in range(len(theta)):
            row = theta_np[begin + k]
            answers.append({
                "params": family.instance_from_theta(row),
                "coefficients": None if coefficients is None else coefficients[k].double().tolist(),
                "basis": family.labels,
                "points": points,
                "values": values[k].double().cpu().tolist(),
                "objective": None if objective is None else _finite_or_none(objective[k]),
                "residual": None if residual is None else float(residual[k]),
                "status": "ok",
            } | family.extra_answer(coefficients[k:k + 1].double() if coefficients is not None else None,
                                    theta[k:k + 1].double()))
    return {"family": family.name, "model": model.model_name, "instances": answers}
