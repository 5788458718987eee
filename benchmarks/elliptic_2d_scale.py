"""Scale figures of `elliptic-pde-2d` (issue 18, items 1 and 3): throughput against the reference and
the batched solvers at equal accuracy, break-even, log-complexity in depth and rank, and time and
memory per instance against the rank R and the batch size.

    python benchmarks/elliptic_2d_scale.py throughput [--run /tmp/e2d/default_run]
    python benchmarks/elliptic_2d_scale.py depth [--steps 600 --batch 60 --depths 1 2 4 8 16]
    python benchmarks/elliptic_2d_scale.py depth-label-free [same options]   # loss=objective, fresh draws
    python benchmarks/elliptic_2d_scale.py rank [--floor-orders 3 ... 12 --geo-orders 3 ... 8]
    python benchmarks/elliptic_2d_scale.py sizes [--orders 6 8 ... 16 --batches 1 16 256 4096]
    python benchmarks/elliptic_2d_scale.py report      # re-render the markdown and the plot from the JSON
    python benchmarks/elliptic_2d_scale.py all

Each part updates its own section of benchmarks/results/elliptic-2d-scale.json and re-renders
RESULTS-elliptic-2d-scale.md and elliptic_2d_log_complexity.png. Run with OMP_NUM_THREADS=1 (one
thread is set here too).

Settings common to every part: the trained default GEO of `convexop train elliptic-pde-2d` (R = 36,
L = 10, M = 72, forward-backward init, 600 steps) in --run, its 60 test instances (with their
finite-difference references) for every accuracy, float32 GEO forwards from a zero start, float64
in-basis programs (`family.program`: the Galerkin program with its generalised Hessian).

- throughput: errors are mean MSE over instances of the values at the 64 x 64 points, against the
  finite-difference reference and against the decoded in-basis optimum. "Equal accuracy": FISTA from
  zero (step 1/L, adaptive restart) and active-set Newton from zero are run for a fixed number of
  iterations (rounds) on every instance; the count is the smallest whose mean error over the 60 test
  instances is <= the GEO's; that count is then timed on fresh instances of the training law, at
  several batch sizes (batch 1: separate one-instance solves). The reference solver is timed on 10
  instances, in one chunk of 10 as `family.reference` solves them. Break-even: data generation plus
  training seconds (the wall time of the run that made --run, read from its log) over the saving per
  instance against the fastest classical method at equal accuracy.
- depth / rank: GEOs trained with the same data (the run's train.h5 / test.h5, copied; the
  references are not solved again), the same optimiser and the same number of mini-batch steps;
  scored on the 60 test instances (zero start); --run must be a supervised run (`--set loss=mse`: the
  family's default is label-free and writes no train.h5). depth-label-free: the same sweep with
  loss=objective (fresh draws every step, only test.h5 used). Rank also gives the basis floor (L2 projection of the
  references) and the in-basis optimum's error against the reference (no training) for more ranks.
- sizes: per-instance forward time (best of blocks, `bench.solvers.timed`) and memory of an
  untrained GEO of default settings (L = 10, M = 2R, forward-backward init, relative queries) for
  r = 6 .. 16 (R = r^2), and of the trained R = 36 GEO against the batch size. Memory: the peak of
  the live bytes of the tensors one forward creates (`PeakTensorBytes`: a TorchDispatchMode that
  counts every operator's output storage and uncounts it when freed; the peak resident set size
  cannot be used: the allocator reuses memory freed by earlier calls); next to it the library's
  own estimate (`models.base.model_footprint`, inference).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from elliptic_2d_scale_report import TIMING_SEED, render
from elliptic_2d_sweeps import FAMILY, depth, depth_label_free, family_of, mean_error, rank, test_set

from convexop import api
from convexop.bench.memory import peak_memory
from convexop.bench.runner import machine_description
from convexop.bench.solvers import geo_forward, timed
from convexop.families import get_family
from convexop.families.elliptic_pde_2d import AXIS, XI
from convexop.models.base import build_model, model_footprint
from convexop.references import elliptic_equation_2d
from convexop.solvers.fista import fista
from convexop.solvers.newton import active_set_newton

RESULTS = Path(__file__).resolve().parent / "results"
JSON_PATH = RESULTS / "elliptic-2d-scale.json"


# ----- shared pieces ----------------------------------------------------------------------------
def load_results() -> dict[str, Any]:
    return json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}


def save_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(results, indent=2, default=float) + "\n")


def trained_geo(run: Path):
    family = get_family(FAMILY)
    model = api.load(run, family)
    model.eval()
    model.set_inference(start="zero")
    return model


def no_stop(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A FISTA stopping measure that never stops (fixed iteration counts) and costs nothing."""
    return torch.full((len(index),), math.inf, dtype=x.dtype)


def fista_fixed(family, theta: torch.Tensor, iterations: int) -> torch.Tensor:
    """`iterations` FISTA steps from zero on the in-basis programs of theta (n, P): (n, R)."""
    zero = torch.zeros(len(theta), family.rank, dtype=torch.float64)
    return fista(family.program(theta), zero, 0.0, iterations, measure=no_stop).x


def newton_fixed(family, theta: torch.Tensor, rounds: int) -> torch.Tensor:
    """`rounds` active-set Newton rounds from zero (no FISTA afterwards): (n, R)."""
    zero = torch.zeros(len(theta), family.rank, dtype=torch.float64)
    return active_set_newton(family.program(theta), zero, 0.0, rounds, rounds=rounds).x


def first_at_most(curve: list[float], level: float) -> int | None:
    return next((k for k, e in enumerate(curve) if e <= level), None)


def per_instance_seconds(solve, theta: torch.Tensor, batch: int, repeats: int = 3) -> float:
    """Seconds per instance of solve(theta_batch) at `batch` (batch 1: 10 separate one-instance solves)."""
    if batch == 1:
        solve(theta[:1])  # warm-up
        started = time.perf_counter()
        for row in theta[:10]:
            solve(row[None])
        return (time.perf_counter() - started) / 10
    solve(theta[:min(batch, 16)])  # warm-up
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        solve(theta[:batch])
        best = min(best, time.perf_counter() - started)
    return best / batch


def run_wall_seconds(run: Path) -> float | None:
    """The wall time of the `convexop train` that made `run`, from `/usr/bin/time -v` in RUN.log."""
    log = run.parent / f"{run.name}.log"
    if not log.is_file():
        return None
    found = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", log.read_text(errors="replace"))
    if not found:
        return None
    seconds = 0.0
    for part in found.group(1).split(":"):
        seconds = 60 * seconds + float(part)
    return seconds


# ----- throughput and break-even ----------------------------------------------------------------
def throughput(args) -> dict[str, Any]:
    run = Path(args.run)
    model = trained_geo(run)
    family = model.family
    data = test_set(run, family)
    theta = torch.as_tensor(data.params, dtype=torch.float64)
    reference = torch.as_tensor(data.targets, dtype=torch.float64)
    optimum = torch.as_tensor(family.in_basis_optimum(data.params))
    optimum_values = family.decode(optimum)
    geo = geo_forward(model, theta)
    geo_error = {"reference": float(mean_error(family, geo, reference).mean()),
                 "optimum": float(mean_error(family, geo, optimum_values).mean())}
    optimum_error = float(mean_error(family, optimum, reference).mean())

    # accuracy against iterations: FISTA (every step recorded) and Newton (one run per round count)
    fista_curve: dict[str, list[float]] = {"reference": [], "optimum": []}

    def record(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        fista_curve["reference"].append(float(mean_error(family, x, reference[index]).mean()))
        fista_curve["optimum"].append(float(mean_error(family, x, optimum_values[index]).mean()))
        return no_stop(x, index)

    fista(family.program(theta), torch.zeros(len(theta), family.rank, dtype=torch.float64), 0.0,
          args.max_fista, measure=record)
    newton_curve: dict[str, list[float]] = {"reference": [], "optimum": []}
    zero = torch.zeros(len(theta), family.rank, dtype=torch.float64)
    newton_curve["reference"].append(float(mean_error(family, zero, reference).mean()))
    newton_curve["optimum"].append(float(mean_error(family, zero, optimum_values).mean()))
    for rounds in range(1, args.max_newton + 1):
        x = newton_fixed(family, theta, rounds)
        newton_curve["reference"].append(float(mean_error(family, x, reference).mean()))
        newton_curve["optimum"].append(float(mean_error(family, x, optimum_values).mean()))
    counts = {solver: {target: first_at_most(curve[target], geo_error[target]) for target in curve}
              for solver, curve in (("fista", fista_curve), ("newton", newton_curve))}

    # timing on fresh instances at each batch size
    fresh = torch.as_tensor(family.sample(max(args.batches), np.random.default_rng(TIMING_SEED)))
    timings: dict[str, Any] = {}
    for batch in args.batches:
        _, seconds = timed(lambda b=batch: geo_forward(model, fresh[:b]), min_seconds=0.3, repeats=3)
        entry = {"geo": seconds / batch}
        if batch <= args.max_solver_batch:
            for solver, solve in (("fista", fista_fixed), ("newton", newton_fixed)):
                for target, count in counts[solver].items():
                    if count is None:
                        continue
                    key = f"{solver}_{target}"
                    entry[key] = per_instance_seconds(lambda t, c=count, s=solve: s(family, t, c), fresh, batch)
        timings[str(batch)] = entry
    started = time.perf_counter()
    elliptic_equation_2d.solve_elliptic_2d(fresh[:10].numpy(), AXIS, xi=XI)
    reference_seconds = (time.perf_counter() - started) / 10

    # break-even against the fastest classical method at equal accuracy (vs the reference)
    metrics = json.loads((run / "metrics.json").read_text())
    wall = run_wall_seconds(run)
    n_instances = json.loads((run / "config.json").read_text())["training"]["n_instances"]
    cost = wall if wall is not None else n_instances * reference_seconds + metrics["training_seconds"]
    geo_best = min(e["geo"] for e in timings.values())
    classical = {"reference solver": reference_seconds}
    for solver in ("fista", "newton"):
        values = [e[f"{solver}_reference"] for e in timings.values() if f"{solver}_reference" in e]
        if values:
            classical[f"{solver} (in-basis, to the GEO's error vs the reference)"] = min(values)
    best_name = min(classical, key=classical.get)
    saving = classical[best_name] - geo_best
    return {
        "setting": {"run": str(run), "test_instances": len(theta), "batches": args.batches,
                    "solver_batches_up_to": args.max_solver_batch, "timing_seed": TIMING_SEED,
                    "max_fista": args.max_fista, "max_newton": args.max_newton},
        "geo_error": geo_error, "in_basis_optimum_error_vs_reference": optimum_error,
        "fista_curve": fista_curve, "newton_curve": newton_curve, "counts": counts,
        "timings": timings, "reference_seconds": reference_seconds,
        "break_even": {"cost_seconds": cost, "cost_source": "wall time in the run's log" if wall is not None
                       else "n_instances x reference seconds + training seconds",
                       "training_seconds": metrics["training_seconds"], "n_instances": n_instances,
                       "geo_seconds": geo_best, "best_classical": best_name,
                       "best_classical_seconds": classical[best_name], "classical": classical,
                       "saving_seconds": saving,
                       "instances": cost / saving if saving > 0 else math.inf},
    }


# ----- time and memory --------------------------------------------------------------------------
def measure_geo(model, theta: torch.Tensor, batch: int) -> dict[str, Any]:
    _, seconds = timed(lambda: geo_forward(model, theta[:batch]), min_seconds=0.3, repeats=3)
    memory = peak_memory(lambda: geo_forward(model, theta[:batch]))
    estimate, _ = model_footprint("geo", model.family, model.init_kwargs, batch, training=False)
    return {"batch": batch, "seconds_per_instance": seconds / batch, "instances_per_second": batch / seconds,
            "peak_bytes": memory, "peak_bytes_per_instance": memory / batch, "estimate_bytes": estimate}


def sizes(args) -> dict[str, Any]:
    settings = dict(get_family(FAMILY).default_training()["model"])
    against_rank = []
    for order in args.orders:
        family = family_of(order)
        torch.manual_seed(0)
        model = build_model("geo", family, **{**settings, "width": 2 * order * order})
        model.eval()
        model.set_inference(start="zero")
        theta = torch.as_tensor(family.sample(max(args.rank_batches), np.random.default_rng(TIMING_SEED)))
        grid = len(family.axis_values)
        for batch in args.rank_batches:
            against_rank.append({"order": order, "rank": order * order, "width": 2 * order * order,
                                 "program_grid": grid * grid, "parameters": model.parameter_count(),
                                 **measure_geo(model, theta, batch)})
    model = trained_geo(Path(args.run))
    theta = torch.as_tensor(model.family.sample(max(args.batches), np.random.default_rng(TIMING_SEED)))
    against_batch = [measure_geo(model, theta, batch) for batch in args.batches]
    return {"setting": f"GEO L = {settings['depth']}, M = 2R, forward-backward init (untrained against R; the "
                       f"trained default run against the batch), float32 forward, zero start, one thread",
            "memory_method": "peak live bytes of the tensors one forward creates (a TorchDispatchMode counts "
                             "every operator's output storages and a weakref finaliser uncounts them when freed; "
                             "parameters, inputs and the allocator's slack are not included; the answers are)",
            "against_rank": against_rank, "against_batch": against_batch}


# ----- command line -----------------------------------------------------------------------------
PARTS = {"throughput": throughput, "depth": depth, "depth-label-free": depth_label_free, "rank": rank,
         "sizes": sizes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=[*PARTS, "report", "all"])
    parser.add_argument("--run", default="/tmp/e2d/default_run", help="trained default run (train.h5, test.h5)")
    parser.add_argument("--work", default="/tmp/e2d_scale", help="folder for the sweep runs")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--max-solver-batch", type=int, default=1024,
                        help="largest batch at which FISTA / Newton are timed (their per-instance cost grows with it)")
    parser.add_argument("--max-fista", type=int, default=40)
    parser.add_argument("--max-newton", type=int, default=6)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--retrain", action="store_true", help="train the sweep points again even when finished")
    parser.add_argument("--batch", type=int, default=60, help="training mini-batch of the sweeps")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--floor-orders", type=int, nargs="+", default=list(range(3, 13)))
    parser.add_argument("--geo-orders", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8])
    parser.add_argument("--geo-fit-max-order", type=int, default=6,
                        help="a second GEO rank fit over r <= this (r = 7, 8 do not train stably at lr 3e-4)")
    parser.add_argument("--orders", type=int, nargs="+", default=[6, 8, 10, 12, 14, 16])
    parser.add_argument("--rank-batches", type=int, nargs="+", default=[1, 256])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    parts = list(PARTS) if args.part == "all" else [] if args.part == "report" else [args.part]
    for part in parts:
        machine = machine_description()
        started = time.perf_counter()
        section = PARTS[part](args)
        section["wall_seconds"] = time.perf_counter() - started
        section["load_average"] = [machine["load_average_start"], [round(v, 2) for v in os.getloadavg()]]
        results = load_results()
        results[part] = section
        results["machine"] = machine
        save_results(results)
        render(results)
    if not parts:
        render(load_results())


if __name__ == "__main__":
    main()
