"""Benchmark: a GEO on `qp-dc3-1000` (DC3's convex QP recipe at 1000 variables, 500 equalities, 500
inequalities, through its dual) against the classical solvers that run here, all on one CPU thread.

    .venv/bin/python benchmarks/qp_dc3_1000.py [--out RUN] [--model geo-gradient|geo] [--compare RUN]
        [--set key=value ...] [--skip-train]
        [--results benchmarks/results] [--test 167] [--osqp-tight 10] [--clarabel 3] [--cvxpy 0]

    (the default model is the family's `default_model`, geo-gradient, into runs/qp-dc3-1000-gradient;
    `--model geo` trains the paper's GEO into runs/qp-dc3-1000; `--compare RUN` re-scores another trained run
    on the same test split in the same process)

Data: the family's 2000 DC3-style instances (`QPDC3Large.dc3_instances()`, seed 17); the test split is
the last `--test` of them (167 = DC3's 8.33%). Their references by `solve_qp` (batched interior point +
KKT polish, gap and violation <= 1e-9) are timed: that is the data generation cost (the default
training is label-free, so no training instance is solved; the test split written here is the one
`train_run` scores on). Training: the family's default settings of the model (plus `--set`) through `train_run`.
Then, on the test split:
  - GEO (zero start, float32, one batch) + the closed-form recovery: relative optimality gap
    (f(y) - f*) / |f*| per instance (mean, max), the certificate's gap, max violations;
  - GEO + polish to 1e-6 (`polish_answers`: the family's active-set KKT polish): certified fraction,
    first-guess acceptance, KKT solves, seconds;
  - the untrained starts, for contrast: the GEO's forward-backward init (projected gradient) at depths 16,
    32, 64 and the gradient GEO's init (FISTA) at depths 16, 32;
  - cold solvers: our batched active set from the empty set (all test instances), OSQP eps 1e-3 (all),
    OSQP eps 1e-9 + polish, Clarabel direct and CVXPY + Clarabel on the first instances only
    (they are slow here; the counts are in the table), and the reference itself (its timing);
    every answer is scored by the same certificate (relative gap and violation of its recovered pair);
  - memory per instance: the rise of the process's peak resident set (VmHWM, reset through
    /proc/self/clear_refs before each stage) over its resident set at the start of the stage, divided by
    the stage's instance count (for the GEO forward this excludes the model's parameters, loaded before);
  - break-even: (data generation + training seconds) / (per-instance time of the fastest cold solver that
    certifies every instance it ran at 1e-6 - GEO + polish per instance).
Writes RESULTS/qp-dc3-1000.json and RESULTS/RESULTS-qp-dc3-1000.md and prints the table.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from qp_dc3_common import machine, run_arguments, run_folder, score_duals, trained, write_results
from qp_dc3_solvers import clarabel_solve, cvxpy_solve, osqp_solve

from convexop import __version__
from convexop import data as datasets
from convexop.families import get_family
from convexop.families.qp_dc3 import dc3_problem
from convexop.models.base import from_checkpoint
from convexop.models.geo import GEO
from convexop.models.geo_gradient import GradientGEO
from convexop.serving.polish import polish_answers

NAME = "qp-dc3-1000"
TOL = 1e-6


class PeakMemory:
    """The rise of the peak resident set (MB) over the resident set at entry (Linux; NaN elsewhere)."""

    @staticmethod
    def _status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return float(line.split()[1]) / 1024
        return math.nan

    def __enter__(self):
        self.megabytes = math.nan
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.start = self._status("VmRSS:")
        except OSError:
            self.start = math.nan
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            self.megabytes = self._status("VmHWM:") - self.start


def test_split(family, count: int) -> np.ndarray:
    return family.dc3_instances()[-count:]


def make_data(family, run: Path, count: int) -> dict:
    """References of the test split (reused when run/test.h5 and the timing exist)."""
    stamp = run / "data_seconds.json"
    if stamp.is_file() and (run / "test.h5").is_file():
        return json.loads(stamp.read_text())
    x = test_split(family, count)
    with PeakMemory() as memory:
        started = time.perf_counter()
        z = family.reference(x)
        seconds = time.perf_counter() - started
    attrs = {"family": family.name, "family_config": json.dumps(family.family_config()), "version": __version__,
             "seed": 17, "law": "dc3-style", "reference_method": family.reference_method, "reference_error": 1e-9}
    run.mkdir(parents=True, exist_ok=True)
    datasets.write_dataset(run / "test.h5", datasets.Dataset(x, z, family.points, attrs))
    out = {"reference_seconds": seconds, "instances": len(x), "per_instance": seconds / len(x),
           "peak_mb_per_instance": memory.megabytes / len(x), "chunk": family.reference_chunk}
    stamp.write_text(json.dumps(out))
    return out


def relative_gaps(family, coefficients: torch.Tensor, theta: torch.Tensor, f_star: torch.Tensor) -> dict:
    dual, inner = family.dual(theta), family.interior(theta)
    y = dual.recover(family.multipliers(coefficients), inner)[0]
    relative = (dual.primal_objective(y) - f_star) / f_star.abs()
    certificate = family.certificate(coefficients, theta)
    return {"relative_gap_mean": float(relative.mean()), "relative_gap_max": float(relative.max()),
            "certificate_gap_mean": float(certificate.gap.mean()), "certificate_gap_max": float(certificate.gap.max()),
            "max_eq_violation": float((y @ dual.data.A[0].T - dual.data.b).abs().max()),
            "max_ineq_violation": float((y @ dual.data.G[0].T - dual.data.h).clamp_min(0).max())}


def score_model(family, run: Path, theta: torch.Tensor, f_star: torch.Tensor) -> tuple[dict, dict]:
    """The trained model of `run` on the test split: (forward and raw gaps, forward + polish to TOL)."""
    model = from_checkpoint(run, family=family)
    model.eval()
    model.set_inference(start="zero")
    n = len(theta)
    with torch.no_grad():
        model.coefficients(theta[:8].float())
        with PeakMemory() as memory:
            started = time.perf_counter()
            coefficients = model.coefficients(theta.float()).double()
            forward = time.perf_counter() - started
    geo = {"model": model.model_name, "forward_seconds_per_instance": forward / n,
           "peak_mb_per_instance": memory.megabytes / n, "parameters": sum(p.numel() for p in model.parameters()),
           **relative_gaps(family, coefficients, theta, f_star)}
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = polish_answers(family, coefficients, theta, TOL, max_iterations=10_000)
        seconds = time.perf_counter() - started
    polish = {"seconds_per_instance": seconds / n,
              "geo_plus_polish_seconds_per_instance": (seconds + forward) / n,
              "certified": float(result.converged.double().mean()),
              "first_guess_acceptance": float(result.first_guess.double().mean()),
              "kkt_solves_mean": float(result.kkt_solves.double().mean()),
              "fista_steps_mean": float(result.fista_steps.double().mean()),
              "max_residual": float(result.residual.max()),
              "max_violation": float(family.certificate(result.x, theta).violation.max()),
              "peak_mb_per_instance": memory.megabytes / n}
    return geo, polish


def evaluate(family, run: Path, args) -> dict:
    test = datasets.read_dataset(run / "test.h5", family)
    theta, z_star = torch.as_tensor(test.params), torch.as_tensor(test.targets)
    dual, inner = family.dual(theta), family.interior(theta)
    f_star = dual.primal_objective(dual.recover(z_star, inner)[0])
    n = len(theta)
    out: dict = {"test_instances": n, "mean_optimum": float(f_star.mean()),
                 "active_constraints_mean": float((z_star[:, family.equalities:] > 0).sum(1).double().mean())}
    out["geo"], out["polish"] = score_model(family, run, theta, f_star)
    if args.compare:  # another trained run (e.g. the paper's GEO), scored on the same split in this process
        geo, polish = score_model(family, Path(args.compare), theta, f_star)
        training = json.loads((Path(args.compare) / "train_seconds.json").read_text())
        out["compare"] = {"run": str(args.compare), "geo": geo, "polish": polish,
                          "training_wall_seconds": training["wall_seconds"]}
    # ----- the untrained starts: exact projected gradient (GEO) and FISTA (geo-gradient) ---------------
    out["untrained"] = {}
    starts = [("GEO forward-backward (projected gradient)", depth, lambda d: GEO(
        family, depth=d, width=2 * family.rank, gamma=0.0, init="forward-backward", start_std=0.0,
        queries="relative")) for depth in (16, 32, 64)]
    starts += [("geo-gradient at init (FISTA)", depth, lambda d: GradientGEO(family, depth=d))
               for depth in (16, 32)]
    for kind, depth, build in (() if args.quick else starts):
        start = build(depth)
        start.eval()
        start.set_inference(start="zero")
        with torch.no_grad():
            started = time.perf_counter()
            raw = start.coefficients(theta.float()).double()
            seconds = time.perf_counter() - started
        out["untrained"][f"{kind}, depth {depth}"] = {"kind": kind, "depth": depth,
                                                      "forward_seconds_per_instance": seconds / n,
                                                      **relative_gaps(family, raw, theta, f_star)}
    # ----- cold classical solvers on the same instances ---------------------------------------
    problem = dc3_problem(17, family.variables, family.equalities, family.inequalities, family.instance_count)
    x, methods = test.params, []
    with PeakMemory() as memory:
        started = time.perf_counter()
        cold = dual.polish(torch.zeros(n, family.rank, dtype=torch.float64), TOL, 10_000, interior=inner,
                           active=torch.zeros(n, family.inequalities, dtype=torch.bool))
        seconds = time.perf_counter() - started
    methods.append(score_duals(family, f"convexop batched active set from the empty set (tol {TOL:g})",
                               cold.x.numpy(), seconds, theta,
                               f"{n} instances, one batch, "
                               f"mean {float(cold.kkt_solves.double().mean()):.2f} KKT solves",
                               memory.megabytes))
    methods.append({"method": "convexop reference: batched interior point + KKT polish (data generation)",
                    "instances": n, "seconds_per_instance": args.data["per_instance"],
                    "certified_0.001": 1.0, "certified_1e-06": 1.0, "max_gap": math.nan, "max_violation": math.nan,
                    "note": f"tol 1e-9, chunks of {args.data['chunk']}, timed in data generation",
                    "peak_mb_per_instance": args.data["peak_mb_per_instance"]})
    solvers = [("OSQP (default eps 1e-3), per instance", args.osqp, lambda rows: osqp_solve(problem, rows)),
               ("OSQP (eps 1e-9, polish), per instance", args.osqp_tight,
                lambda rows: osqp_solve(problem, rows, eps_abs=1e-9, eps_rel=1e-9, polishing=True, max_iter=200_000)),
               ("Clarabel (default 1e-8), per instance", args.clarabel, lambda rows: clarabel_solve(problem, rows)),
               ("CVXPY + Clarabel, per instance", args.cvxpy, lambda rows: cvxpy_solve(problem, rows))]
    for name, count, solve in solvers:
        count = min(n, count)
        if count <= 0:
            continue
        with PeakMemory() as memory:
            duals, seconds = solve(x[:count])
        methods.append(score_duals(family, name, duals, seconds, theta[:count], f"first {count} test instances",
                                   memory.megabytes))
    out["classical"] = methods
    return out


def break_even(result: dict) -> dict:
    fixed = result["data"]["reference_seconds"] + result["training"]["wall_seconds"]
    able = [m for m in result["evaluation"]["classical"] if m["certified_1e-06"] == 1.0 and "CVXPY" not in m["method"]]
    best = min(able, key=lambda m: m["seconds_per_instance"]) if able else None
    ours = result["evaluation"]["polish"]["geo_plus_polish_seconds_per_instance"]
    saving = (best["seconds_per_instance"] - ours) if best else math.nan
    return {"fixed_seconds": fixed, "best_classical": best["method"] if best else None,
            "best_seconds_per_instance": best["seconds_per_instance"] if best else None,
            "geo_plus_polish_seconds_per_instance": ours,
            "instances": math.ceil(fixed / saving) if saving > 0 else math.inf}


def markdown(result: dict) -> str:
    ev, geo, pol, be = result["evaluation"], result["evaluation"]["geo"], result["evaluation"]["polish"], \
        result["break_even"]

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def ms(seconds: float) -> str:
        return f"{1e3 * seconds:.1f} ms"

    label = LABELS.get(geo.get("model", "geo"), geo.get("model", "geo"))
    lines = [f"# {NAME}: GEO on DC3's convex QP recipe at 1000 variables (through its dual)", "",
             (f"convexop {result['version']}; {result['machine']}; the family's 2000 DC3-style instances (seed 17), "
              f"test = last {ev['test_instances']} (mean optimum {ev['mean_optimum']:.2f}, "
              f"{ev['active_constraints_mean']:.0f} of 500 inequalities active on average). Every time is one CPU "
              "thread, measured while other jobs shared the machine's two cores."), "",
             ("| method | s / instance | certified 1e-6 | gap (mean / max) | max violation | peak MB / instance "
              "| note |"),
             "|---|---|---|---|---|---|---|",
             *model_rows(label, geo, pol, ev["test_instances"], f"trained {result['training']['wall_seconds']:.0f} s")]
    if "compare" in ev:
        other = ev["compare"]
        note = f"trained {other['training_wall_seconds']:.0f} s, run {other['run']}, re-scored here"
        lines += model_rows(LABELS.get(other["geo"]["model"], other["geo"]["model"]), other["geo"], other["polish"],
                            ev["test_instances"], note)
    for m in ev["classical"]:
        gap = "-" if math.isnan(m["max_gap"]) else f"max {m['max_gap']:.1e}"
        violation = "-" if math.isnan(m["max_violation"]) else f"{m['max_violation']:.1e}"
        lines.append(f"| {m['method']} | {m['seconds_per_instance']:.2e} | {100 * m['certified_1e-06']:.1f}% | {gap} | "
                     f"{violation} | {m['peak_mb_per_instance']:.2f} | {m['note']} |")
    raw_ok = geo["relative_gap_mean"] <= 1e-2
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|",
              (f"| raw mean relative gap <= 1% ({label}) | {100 * geo['relative_gap_mean']:.2f}% "
               f"(max {100 * geo['relative_gap_max']:.2f}%) | {yes(raw_ok)} |"),
              (f"| 100% certified at 1e-6 after polish | {100 * pol['certified']:.1f}% | "
               f"{yes(pol['certified'] == 1.0)} |"),
              (f"| GEO + polish faster per instance than the best cold classical solver ({be['best_classical']}) | "
               f"{ms(be['geo_plus_polish_seconds_per_instance'])} vs {ms(be['best_seconds_per_instance'])} | "
               f"{yes(be['instances'] != math.inf)} |"), "",
              "## Untrained starts (exact methods in decoupled coordinates, from zero)", "",
              "| start | depth | forward s / instance | mean / max relative gap |", "|---|---|---|---|"]
    for u in ev["untrained"].values():
        lines.append(f"| {u['kind']} | {u['depth']} | {u['forward_seconds_per_instance']:.2e} | "
                     f"{100 * u['relative_gap_mean']:.2f}% / {100 * u['relative_gap_max']:.2f}% |")
    verdict = "never (GEO + polish is not faster per instance)" if be["instances"] == math.inf \
        else f"{be['instances']:,} instances"
    lines += ["", "## Break-even", "",
              (f"Fixed cost: references of the {result['data']['instances']} test instances "
               f"{result['data']['reference_seconds']:.0f} s + training {result['training']['wall_seconds']:.0f} s = "
               f"{be['fixed_seconds']:.0f} s; against {be['best_classical']}: {verdict}."), "",
              "## Notes", "", *NOTES, ""]
    training = {k: result["training"]["training"][k] for k in ("steps", "batch_size", "lr", "schedule", "loss")}
    name = result["training"].get("model_name", "geo")
    lines += [f"Training ({name}): {json.dumps(result['training']['model'])}, {json.dumps(training)}.", ""]
    return "\n".join(lines)


LABELS = {"geo": "GEO (paper)", "geo-gradient": "gradient GEO (geo-gradient)"}


def model_rows(label: str, geo: dict, pol: dict, n: int, note: str) -> list[str]:
    """The two table rows of a trained model: its raw answers and its answers polished to TOL."""
    return [(f"| **{label}, no polish** (batch {n}) | {geo['forward_seconds_per_instance']:.2e} | - | "
             f"{100 * geo['relative_gap_mean']:.2f}% / {100 * geo['relative_gap_max']:.2f}% (f - f*) / abs(f*) | "
             f"{max(geo['max_eq_violation'], geo['max_ineq_violation']):.1e} | {geo['peak_mb_per_instance']:.2f} | "
             f"{geo['parameters'] / 1e6:.3g} M parameters, {note} |"),
            (f"| **{label} + polish 1e-6** | {pol['geo_plus_polish_seconds_per_instance']:.2e} | "
             f"{100 * pol['certified']:.1f}% | <= 1e-6 (max {pol['max_residual']:.1e}) | {pol['max_violation']:.1e} | "
             f"{pol['peak_mb_per_instance']:.2f} (polish) | {pol['kkt_solves_mean']:.2f} KKT solves, "
             f"first guess {100 * pol['first_guess_acceptance']:.1f}%, {pol['fista_steps_mean']:.1f} FISTA steps |")]


NOTES = [
    ("- Models: the default (`QPDC3Large.default_training()['default_model']`) is the gradient-reading GEO "
     "(`geo-gradient`, models/geo_gradient.py): layer l forms y_l = x_l + beta_l (x_l - x_{l-1}) and "
     "x_{l+1} = clamp(y_l - d_l * grad g(y_l + c_l) + b_l) with the exact gradient (`QPDC3Large.gradient`, closed "
     "form, block diagonal Hessian), learned per-coordinate d_l, beta_l, c_l, b_l: 4 L R = 64,000 parameters, "
     "started as 16 steps of FISTA. The paper's GEO (`--model geo`, 81 M parameters: it reads the gradient through "
     "M = 2R learned queries per layer) was trained earlier into runs/qp-dc3-1000 (60 label-free steps at lr 1e-6, "
     "538 s) and is re-scored here by `--compare runs/qp-dc3-1000` on the same split in the same process."),
    ("- Certificate: every answer (ours and the solvers') is scored by the same pair: the relative duality gap "
     "|f(y) - d(z~)| / max(1, |f(y)|) of the recovered primal y (lambda re-solved for mu, ratio test towards A^+ x) "
     "and the absolute violation; the raw gap column is (f(y) - f*) / |f*| against the reference optimum."),
    ("- Memory: rise of the process's peak resident set over its resident set at the start of each stage (VmHWM "
     "reset through /proc/self/clear_refs), per instance of the stage's batch; the models' parameters (loaded "
     "before) are not counted. The rise is 0 where a stage fits in pages the process already holds (the allocator "
     "reuses freed memory). The paper's GEO is 81 M float32 parameters (324 MB), the gradient GEO 256 KB."),
    ("- The slow per-instance solvers (OSQP tight, Clarabel, CVXPY) ran on the first test instances only (counts in "
     "the note column); OSQP's setup (one factorisation, ~25 s here) is excluded, Clarabel's is included (it factors "
     "the dense 2000 x 2000 KKT matrix of this problem through a sparse LDL). OSQP at eps 1e-3 certifies none at "
     "1e-6. Times vary by up to 2x between runs on this shared machine (the cold active set: 53.5 ms in the earlier "
     "run); compare rows of one run."),
    ("- Gradient GEO, settings tried (one thread, separate runs through `train_run`, same test split; mean / max raw "
     "gap, training seconds): depth 16, batch 16: lr 1e-2 300 steps 0.30% / 2.45% (17 s); lr 3e-3 1000 steps "
     "0.074% / 0.52% (53 s); lr 1e-2 1000 steps of 32 0.12% / 1.02% (74 s); lr 1e-3 1000 steps 0.061% / 0.51% "
     "(80 s, the default); depth 32, lr 3e-3: 0.033% / 0.52% (80 s; GEO + polish no faster: the polish's one "
     "batched KKT solve dominates); without momentum (PG start), lr 1e-2: 1.47% / 4.66%; with a learned rank-16 "
     "term in the preconditioner, lr 3e-3: 2.85% / 5.74% (worse than diagonal only). 2000 steps at 3e-3 kept "
     "the step-1000 model: the trainer keeps the checkpoint of the best running training loss, and label-free "
     "windows draw different instances."),
    ("- Untrained exact methods with the exact gradient (the gradient GEO at init, separate run): FISTA 16 / 32 / "
     "64 layers 1.98% / 0.29% / 0.027%, projected gradient 12.1% / 2.13% / 0.14%; the paper's GEO at its "
     "forward-backward init (central differences in float32) 11.9% / 1.94% / 0.42% (table above)."),
    ("- Paper's GEO, training (exploration, 32 instances, separate scripts): at lr 1e-5 (qp-dc3's rate) the raw gap "
     "of the 16-layer start grows, 11.9% -> 50% in 30 steps of 32; at 1e-6 it falls, 11.9% -> 2.5% / 1.6% / 1.5% "
     "after 10 / 20 / 30 steps of 16 (the per-step gain shrinks). A step costs ~9 s on one thread, most of it "
     "instance-free (batch 16: forward 0.5 s, backward 3.8 s, Adam 1.3 s on 81 M parameters, under load). Depth 32, "
     "trained the same way for 30 steps (`--model geo --set depth=32 --set steps=30`, 161 M parameters, needs "
     "CONVEXOP_MAX_MODEL_BYTES above 2 GiB): raw gap 1.76% / 4.65% (untrained 1.94%), GEO + polish 47.9 ms vs "
     "58.3 ms for the cold active set, 561 s of training: no better than depth 16."),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_arguments(parser, NAME)
    parser.add_argument("--test", type=int, default=167, help="test instances (the last of the 2000)")
    parser.add_argument("--osqp", type=int, default=10**9, help="instances for OSQP eps 1e-3 (default all)")
    parser.add_argument("--osqp-tight", type=int, default=10)
    parser.add_argument("--clarabel", type=int, default=3)
    parser.add_argument("--cvxpy", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = run_folder(args, NAME)
    family = get_family(NAME)
    if args.quick:
        args.test, args.osqp, args.osqp_tight, args.clarabel = min(args.test, 4), 2, 1, 1
    data = make_data(family, run, args.test)
    training = trained(run, args, NAME)
    args.data = data
    result = {"machine": machine(), "data": data, "training": training}
    result["evaluation"] = evaluate(family, run, args)
    result["break_even"] = break_even(result)
    write_results(result, args, NAME, markdown)


if __name__ == "__main__":
    main()
