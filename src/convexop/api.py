"""The Python surface for families built in code: train, load, solve and assess in a few calls.

    family = convexop.from_cvxpy(problem, sampler)          # or convexop.from_torch(...)
    model, history = api.train(family, "runs/mine", steps=1000)
    answers = api.solve(model, [{"b": [...]}], polish=1e-6)  # OUT.json's content, as a dict
    report = api.assess(family, model, n=200)               # gaps, certificates, polish savings

Settings are the keys of `convexop train --set` (model, training) given as keyword arguments.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .families import Family
from .models.base import OperatorModel, from_checkpoint
from .serving.answers import DEFAULT_TOL
from .serving.polish import DEFAULT_ITERATIONS, compare_with_cold_start
from .serving.solve import solve_instances
from .training.config import default_model, resolve_config
from .training.run import train_run

__all__ = ["assess", "load", "solve", "train"]


def train(family: Family, out: str | Path, model: str | None = None, callback=None, **settings: Any):
    """Train `model` (default: the family's, `training.config.default_model`) on `family` into the run
    directory `out`; returns (model, history)."""
    family_arg = family if family.user_defined else type(family)
    config = resolve_config(family_arg, model or default_model(family_arg), {k: str(v) for k, v in settings.items()})
    return train_run(config, out, callback=callback, family=family)


def load(run_dir: str | Path, family: Family | None = None) -> OperatorModel:
    """The trained model of a run directory (pass the family object for families built in code)."""
    return from_checkpoint(run_dir, family=family)


def solve(model: OperatorModel, instances: list[dict[str, Any]], polish: float | None = None,
          polish_iterations: int = DEFAULT_ITERATIONS, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """Answers for instances (dicts of parameter name -> value), as `convexop solve` writes them: each
    with its certificate and `status` (`optimal` when certified at `polish`, or at `tol` without
    polishing; `optimal_inaccurate`, `approximate` or `error` otherwise, `infeasible` or `unbounded` for
    instances proven so, with null values; README "Answers")."""
    return solve_instances(model, instances, polish_tol=polish, polish_iterations=polish_iterations, tol=tol)


def assess(family: Family, model: OperatorModel, n: int = 200, seed: int = 12345, tol: float = 1e-6,
           max_iterations: int = DEFAULT_ITERATIONS) -> dict[str, float]:
    """Fresh instances: the model's mean relative objective gap to the reference optimum (before
    polish), median certificate, forward time per instance, and polish iterations to `tol` from the
    model's answers against a cold start (FISTA from zero, or the family's own polish). The gap
    compares objectives (QP duals: primal objectives of the recovered answers), so an infeasible raw
    answer can show a small or negative gap: read it with `max_violation`."""
    theta = family.sample(n, np.random.default_rng(seed))
    optimum = torch.as_tensor(family.reference(theta), dtype=torch.float64)
    theta64 = torch.as_tensor(theta, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        x = model.coefficients(theta64.float())
        seconds = time.perf_counter() - start
    x = family.finalise(x)
    certificate = family.certificate(x, theta64)
    best = family.certificate(family.finalise(family.project(optimum)), theta64).objective
    gap = (certificate.objective - best).abs() / best.abs().clamp_min(1.0)
    comparison = compare_with_cold_start(family, x, theta64, tol, max_iterations)
    return {"instances": n, "mean_relative_gap": float(gap.mean()), "max_relative_gap": float(gap.max()),
            "median_certificate": float(certificate.measure.median()),
            "certified_fraction": float(certificate.certified(tol).double().mean()),
            "max_violation": float(certificate.violation.max()),
            "forward_us_per_instance": 1e6 * seconds / n, "polish_tol": tol,
            "warm_iterations": comparison["warm_mean"], "cold_iterations": comparison["cold_mean"],
            "polish_ratio": comparison["ratio"], "warm_converged": comparison["warm_converged"],
            "cold_fista_iterations": comparison["cold_fista_mean"],
            "ratio_vs_cold_fista": comparison["ratio_vs_cold_fista"]}


def train_and_assess(family: Family, out: str | Path | None = None, n: int = 200, **settings: Any) -> dict[str, Any]:
    """Train a GEO on `family` (into `out`, or a temporary folder) and `assess` it: what the worked
    examples under examples/ run. Adds the training time (data generation included)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="convexop-") as scratch:
        folder = Path(out) if out is not None else Path(scratch) / "run"
        start = time.perf_counter()
        model, history = train(family, folder, **settings)
        seconds = time.perf_counter() - start
        report = assess(family, model, n=n)
    return {"family": family.name, "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": seconds, "test_mse": history[-1]["test_mse"]} | report


def example_main(family: Family, steps: int = 2000, argv: list[str] | None = None) -> dict[str, Any]:
    """The command line of the scripts under examples/: train and assess a GEO, write the report as JSON
    to stdout (the one place in the library that writes to stdout: it is a script's main)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=f"train and assess a GEO on the {family.name} family")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args(argv)
    report = train_and_assess(family, args.out, steps=args.steps)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return report
