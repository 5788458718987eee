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
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.base import OperatorModel
from .polish import DEFAULT_ITERATIONS, check_polishable, check_settings, polish


def read_instances(path: str | Path) -> list[dict[str, Any]]:
    """All instances of an IN.json file (see `iter_instances` for large files)."""
    instances = list(iter_instances(path))
    if not instances:
        raise InputError("instances", [], "a non-empty list of instances")
    return instances


_TOP_LEVEL = 'expected {"instances": [{...}, ...]} at the top level'


class _JSONStream:
    """Reads one JSON text from a file a chunk at a time: values are decoded one by one, so the
    memory held is one array element (plus a read buffer), however long the file."""

    def __init__(self, stream, name: str, chunk: int = 1 << 16) -> None:
        self.stream, self.name, self.chunk = stream, name, chunk
        self.buffer, self.position, self.offset, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def bad(self, what: str = "") -> InputError:
        where = f" at character {self.offset + self.position}"
        return InputError("--instances", self.name, "", f"not valid JSON{where}{': ' + what if what else ''}")

    def _more(self, size: int) -> bool:
        try:
            text = self.stream.read(size)
        except UnicodeDecodeError:
            raise InputError("--instances", self.name, "", "not valid JSON (not UTF-8 text)") from None
        if not text:
            self.eof = True
            return False
        self.offset += self.position
        self.buffer, self.position = self.buffer[self.position:] + text, 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end of the file), not consumed."""
        while True:
            text, position = self.buffer, self.position
            while position < len(text) and text[position] in " \t\n\r":
                position += 1
            self.position = position
            if position < len(text) or not self._more(self.chunk):
                return text[position] if position < len(text) else ""

    def expect(self, character: str) -> None:
        if self.peek() != character:
            raise self.bad(f"expected {character!r}")
        self.position += 1

    def value(self) -> Any:
        """Decode the next JSON value, reading more of the file while it is incomplete."""
        self.peek()
        size = self.chunk
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError:
                if self.eof or not self._more(size):
                    raise self.bad() from None
                size *= 2  # long values: geometric reads keep re-decoding O(n log n)
                continue
            except RecursionError:
                raise self.bad("nested too deeply") from None
            if end == len(self.buffer) and not self.eof and self._more(size):
                continue  # a number at the end of the buffer may go on in the next chunk
            self.position = end
            return value


def iter_instances(path: str | Path):
    """Yield the instances of an IN.json file `{"instances": [{...}, ...]}` one at a time, with
    bounded memory. Raises InputError for a missing file, invalid JSON or another layout; errors
    after the last instance surface when the generator is exhausted."""
    path = Path(path)
    try:
        found = path.is_file()
    except (ValueError, OSError):
        found = False
    if not found:
        raise InputError("--instances", str(path), "", "file not found")
    with open(path, encoding="utf-8") as stream:
        reader = _JSONStream(stream, str(path))
        first = reader.peek()
        if first != "{":
            if first == "":
                raise reader.bad("empty file")
            reader.value()  # a syntax error, or valid JSON of another layout
            raise InputError("instances", None, "", _TOP_LEVEL)
        reader.expect("{")
        seen = False
        if reader.peek() == "}":
            reader.position += 1
        else:
            while True:
                key = reader.value()
                if not isinstance(key, str):
                    raise reader.bad("object keys are strings")
                reader.expect(":")
                if key == "instances":
                    if seen:
                        raise InputError("instances", None, "", "given twice at the top level")
                    seen = True
                    if reader.peek() != "[":
                        reader.value()
                        raise InputError("instances", None, "", _TOP_LEVEL)
                    reader.expect("[")
                    if reader.peek() == "]":
                        reader.position += 1
                    else:
                        while True:
                            yield reader.value()
                            following = reader.peek()
                            reader.expect("," if following == "," else "]")
                            if following != ",":
                                break
                else:
                    reader.value()
                following = reader.peek()
                reader.expect("," if following == "," else "}")
                if following != ",":
                    break
        if reader.peek() != "":
            raise reader.bad("text after the top-level object")
        if not seen:
            raise InputError("instances", None, "", _TOP_LEVEL)


def _shift_index(error: InputError, offset: int) -> InputError:
    """Renumber `instances[i]` in an error about one chunk to its place in the whole file."""
    match = re.match(r"instances\[(\d+)\]", error.field)
    if match and offset:
        fixed = f"instances[{int(match.group(1)) + offset}]"
        error.field = fixed + error.field[match.end():]
        error.args = (str(error).replace(match.group(0), fixed, 1),)
    return error


def _chunks(path: str | Path, size: int):
    chunk: list[Any] = []
    for instance in iter_instances(path):
        chunk.append(instance)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_instances_file(family, path: str | Path, batch: int = 4096) -> int:
    """Validate every instance of a (possibly huge) IN.json against `family`, streaming; returns
    how many there are. Errors name the instance by its index in the whole file."""
    count = 0
    for chunk in _chunks(path, batch):
        try:
            family.theta_from_instances(chunk)
        except InputError as error:
            raise _shift_index(error, count) from None
        count += len(chunk)
    if count == 0:
        raise InputError("instances", [], "a non-empty list of instances")
    return count


def solve_file(model: OperatorModel, instances_path: str | Path, out: str | Path, start: str = "zero",
               batch: int = 4096, polish_tol: float | None = None,
               polish_iterations: int = DEFAULT_ITERATIONS) -> dict[str, Any]:
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
        for chunk in _chunks(instances_path, batch):
            try:
                answers = solve_instances(model, chunk, start=start, batch=batch, polish_tol=polish_tol,
                                          polish_iterations=polish_iterations)["instances"]
            except InputError as error:
                raise _shift_index(error, summary["n"]) from None
            stream.write((", " if summary["n"] else "") + json.dumps(answers)[1:-1])
            summary["n"] += len(answers)
            for answer in answers:
                summary["status"][answer["status"]] = summary["status"].get(answer["status"], 0) + 1
                summary["iterations"] += int(answer.get("iterations", 0))
        if summary["n"] == 0:
            raise InputError("instances", [], "a non-empty list of instances")
        stream.write("]}")
    return summary


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
            x64 = family.finalise(coefficients)
            coefficients, values = x64, family.decode(x64)
            t64 = torch.as_tensor(theta_np[begin:begin + batch], dtype=torch.float64, device=device)
            if polish_tol is not None:
                polished = polish(family, x64, t64, polish_tol, polish_iterations)
                x64, status, iterations = polished.x, polished.status, polished.iterations.tolist()
                coefficients, values = x64, family.decode(x64)
            objective = family.objective(x64, t64).detach().cpu().numpy()
            residual = family.certificate(x64, t64)
            residual = None if residual is None else residual.cpu().numpy()
            violation = family.violation(x64, t64)
            violation = None if violation is None else violation.cpu().numpy()
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
