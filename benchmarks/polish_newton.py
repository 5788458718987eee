"""Polish from the GEO's answers: active-set Newton (the default on toy-box and elliptic-pde) against
warm and cold FISTA, iterations and wall time to a certificate tolerance.

    python benchmarks/polish_newton.py [--instances 200] [--out benchmarks/results/polish-newton.json]

Trains a short GEO per family (400 steps elliptic-pde, 600 toy-box; one thread), then solves the
same fresh instances four ways at tol 1e-3 and 1e-6.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from convexop import api
from convexop.families import get_family
from convexop.serving.polish import polish_answers


def timed_polish(family, start, theta, tol, method):
    begin = time.perf_counter()
    result = polish_answers(family, start, theta, tol, 20000, method=method)
    seconds = time.perf_counter() - begin
    return {"iterations": float(result.iterations.double().mean()), "seconds": seconds,
            "certified": float(result.converged.double().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/polish-newton.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name, steps in (("toy-box", 600), ("elliptic-pde", 400)):
        family = get_family(name)
        with tempfile.TemporaryDirectory() as folder:
            model, _ = api.train(family, Path(folder) / "run", steps=steps)
        theta = torch.as_tensor(family.sample(args.instances, np.random.default_rng(7)))
        model.eval()
        with torch.no_grad():
            answer = model.coefficients(theta.float()).double()
        zero = torch.zeros_like(answer)
        for tol in (1e-3, 1e-6):
            results[f"{name} @{tol:g}"] = {
                "warm Newton": timed_polish(family, answer, theta, tol, "auto"),
                "cold Newton": timed_polish(family, zero, theta, tol, "auto"),
                "warm FISTA": timed_polish(family, answer, theta, tol, "fista"),
                "cold FISTA": timed_polish(family, zero, theta, tol, "fista"),
            }
    Path(args.out).write_text(json.dumps({"setting": f"{args.instances} instances (seed 7), one thread",
                                          "results": results}, indent=2))
    for key, row in results.items():
        ratio = row["cold FISTA"]["iterations"] / max(row["warm Newton"]["iterations"], 1e-12)
        print(f"{key}: " + ", ".join(f"{k} {v['iterations']:.2f} it {v['seconds']:.3f} s" for k, v in row.items())
              + f"; cold FISTA / warm Newton iterations {ratio:.1f}x")


if __name__ == "__main__":
    main()
