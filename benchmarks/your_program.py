"""Your program, out of the box: default training, raw answers, polish, the documented path's speed.

    python benchmarks/your_program.py [--programs a.py,b.py] [--out benchmarks/results/your-program.json]
        [--set loss=mse]

For each program file (the worked examples and the programs under benchmarks/programs/, written here
as a new user would, not for the tests): `api.train` on the defaults (data generation included),
then on 200 fresh instances (seed 12345): the raw answers' mean / max relative objective gap to the
reference optimum (an answer whose violation exceeds 1e-6 counts as 100%), the fraction `optimal`
after `api.solve(..., polish=1e-6)`, the largest distance to CVXPY/Clarabel at tolerances 1e-11
(CVXPY programs), and the time per instance at batch 4,096 of the documented path (`api.solve` with
polish), of forward + polish alone, and of CVXPY + Clarabel compiled once (50 instances, one at a
time); the break-even count is training seconds over the per-instance saving. One thread.
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
from convexop.families.from_cvxpy_qp import QPExtractor, qp_refusal
from convexop.serving.polish import polish_answers
from convexop.training.trainer import TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ["examples/lasso.py", "examples/mpc.py", "examples/markowitz.py", "benchmarks/programs/nnls.py",
            "benchmarks/programs/logistic.py", "benchmarks/programs/dispatch.py", "benchmarks/programs/ridge_box.py"]


def cvxpy_answers(family, theta: np.ndarray, **settings):
    """(answers (n, vars) or None, seconds per instance) with CVXPY + Clarabel, compiled once; the
    objective values (n,) of the last call are kept in `cvxpy_answers.values`."""
    problem = getattr(family, "problem", None)
    if problem is None:
        return None, None
    values = []
    cvxpy_answers.values = values
    import cvxpy as cp

    split = family.split_theta(torch.as_tensor(theta))
    by_name = {p.name(): p for p in problem.parameters()}
    variables = sorted(problem.variables(), key=lambda v: v.id)
    answers, started = [], None
    for k in range(len(theta) + 1):
        row = k - 1 if k else 0  # row 0 twice: the first solve compiles and is not timed
        for name, value in split.items():
            by_name[name].value = value[row].numpy()
        if k == 1:
            started = time.perf_counter()
        problem.solve(solver=cp.CLARABEL, **settings)
        if k:
            answers.append(np.concatenate([np.asarray(v.value, dtype=np.float64).reshape(-1) for v in variables]))
            values.append(problem.value)
    return np.stack(answers), (time.perf_counter() - started) / len(theta)


def osqp_seconds(family, theta: np.ndarray) -> tuple[float, float] | None:
    """(seconds per instance, fraction solved) of OSQP called directly (eps 1e-6, polish on, warm start
    off) on QP programs: one solver object set up once, each instance's q, l, u (and P, A on the dense
    sparsity pattern when they vary between instances) written in by `update`, so constant matrices are
    factored once; the QP data read by the library's extractor (not timed)."""
    problem = getattr(family, "problem", None)
    if problem is None or qp_refusal(problem) is not None:
        return None
    import osqp
    from scipy import sparse

    variables = sorted(problem.variables(), key=lambda v: v.id)
    extractor = QPExtractor(problem, variables, problem.parameters(), family.sign)
    split = family.split_theta(torch.as_tensor(theta))
    data = {k: v.numpy() for k, v in extractor.data({p.id: split[p.name()].double() for p in problem.parameters()},
                                                    len(theta)).items()}
    n, me = data["P"].shape[-1], data["A"].shape[1]
    upper = np.triu(np.ones((n, n), dtype=bool))
    k = np.concatenate([np.broadcast_to(data["A"], (len(theta), me, n)),
                        np.broadcast_to(data["G"], (len(theta), data["G"].shape[1], n))], axis=1)
    p = np.broadcast_to(data["P"], (len(theta), n, n))
    lower = np.concatenate([np.broadcast_to(data["b"], (len(theta), me)), np.full(data["h"].shape, -np.inf)], 1)
    higher = np.concatenate([np.broadcast_to(data["b"], (len(theta), me)), data["h"]], 1)
    constant = bool(np.all(p == p[:1]) and np.all(k == k[:1]))  # then only q, l, u are written per instance
    solver = osqp.OSQP()
    solver.setup(sparse.csc_matrix(np.where(upper, p[0], 0.0) if constant else upper.astype(float)), data["q"][0],
                 sparse.csc_matrix(k[0] if constant else np.ones(k.shape[1:])), lower[0], higher[0], verbose=False,
                 warm_starting=False, eps_abs=1e-6, eps_rel=1e-6, polishing=True)
    solved, started = 0, time.perf_counter()
    for i in range(len(theta)):  # column-major data of the dense patterns
        if constant:
            solver.update(q=data["q"][i], l=lower[i], u=higher[i])
        else:
            solver.update(Px=p[i].T[upper.T], Ax=k[i].T.reshape(-1), q=data["q"][i], l=lower[i], u=higher[i])
        solved += solver.solve().info.status == "solved"
    return (time.perf_counter() - started) / len(theta), solved / len(theta)


def assess(spec: str, folder: Path, settings: dict[str, str]) -> dict:
    family = get_family(str(ROOT / spec) + ":family")
    started = time.perf_counter()
    try:
        model, history = api.train(family, folder, **settings)
    except TrainingDiverged as error:
        return {"diverged": str(error)}
    train_seconds = time.perf_counter() - started
    model.eval()
    model.set_inference(start="zero")
    theta = family.sample(200, np.random.default_rng(12345))
    t64 = torch.as_tensor(theta)
    with torch.no_grad():
        x = family.finalise(model.coefficients(t64.float()))
    certificate = family.certificate(x, t64)
    optimum = torch.as_tensor(family.in_basis_optimum(theta))
    best = family.certificate(optimum, t64).objective
    gap = (certificate.objective - best).abs() / best.abs().clamp_min(1.0)
    infeasible = ~(certificate.violation <= 1e-6)
    gap = torch.where(infeasible | ~torch.isfinite(gap), torch.ones_like(gap), gap)
    instances = [family.instance_from_theta(row) for row in theta]
    answers = api.solve(model, instances, polish=1e-6)["instances"]
    optimal = np.mean([a["status"] == "optimal" for a in answers])
    polished = torch.as_tensor([a["coefficients"] for a in answers], dtype=torch.float64)
    out = {"train_seconds": train_seconds, "steps": history[-1]["step"], "test_mse": history[-1]["test_mse"],
           "raw_mean_gap": float(gap.mean()), "raw_max_gap": float(gap.max()),
           "raw_infeasible": float(infeasible.double().mean()), "optimal_after_polish": float(optimal),
           "max_distance_to_reference": float((polished - optimum).abs().max())}
    _, cvxpy_seconds = cvxpy_answers(family, theta[:50])  # timed with Clarabel's defaults
    theirs, _ = cvxpy_answers(family, theta[:50], tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    if theirs is not None:
        ours = np.asarray([a["variables"] for a in answers[:50]], dtype=object)
        flat = np.stack([np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in row.values()])
                         for row in ours])
        ours_value = family.sign * np.array([a["objective"] for a in answers[:50]], dtype=np.float64)  # its sense
        theirs_value = np.asarray(cvxpy_answers.values)
        excess = family.sign * (ours_value - theirs_value) / np.maximum(1.0, np.abs(theirs_value))
        out |= {"max_distance_to_cvxpy": float(np.abs(flat - theirs).max()), "cvxpy_seconds": cvxpy_seconds,
                "max_objective_excess_over_cvxpy": float(excess.max())}  # < 0: ours is the better point
    big = family.sample(4096, np.random.default_rng(7))
    big_instances = [family.instance_from_theta(row) for row in big]
    begin = time.perf_counter()
    api.solve(model, big_instances, polish=1e-6)
    documented = (time.perf_counter() - begin) / len(big)
    begin = time.perf_counter()
    b64 = torch.as_tensor(big)
    with torch.no_grad():
        xb = model.coefficients(b64.float())
    polish_answers(family, xb, b64, 1e-6)
    direct = (time.perf_counter() - begin) / len(big)
    out |= {"documented_seconds": documented, "forward_polish_seconds": direct,
            "documented_over_direct": documented / direct}
    osqp_timing = osqp_seconds(family, theta[:50])
    if osqp_timing is not None:
        out |= {"osqp_seconds": osqp_timing[0], "osqp_solved": osqp_timing[1],
                "speedup_vs_osqp": osqp_timing[0] / documented}
    if cvxpy_seconds:
        out |= {"speedup_vs_cvxpy": cvxpy_seconds / documented,
                "break_even": train_seconds / max(cvxpy_seconds - documented, 1e-12)}
    return out


def markdown(results: dict, settings: list[str] | None = None) -> str:
    """RESULTS-your-program.md: one row per program, the targets of the issue beside the figures
    (`settings`: the --set training settings of every program, named in the title)."""
    def cell(entry: dict, key: str, form: str) -> str:
        return form.format(entry[key]) if entry.get(key) is not None else "-"

    title = "# Your program on the defaults: training, raw answers, polish, the documented path"
    lines = [title + (f" (with --set {', '.join(settings)})" if settings else ""), "",
             ("`python benchmarks/your_program.py` (one thread, a 2-core machine shared with other jobs). Targets: "
             "training without divergence in <= 5 min; raw mean relative objective gap <= 1% (an infeasible raw "
             "answer counts as 100%); every answer `optimal` after `--polish 1e-6` and within 1e-6 of "
             "CVXPY/Clarabel; the documented path within 1.5x of forward + polish and >= 5x faster than CVXPY "
             "+ Clarabel compiled once (and than OSQP called directly, on QPs). Objective excess: max over 50 "
             "instances of (ours - CVXPY's) / max(1, |CVXPY's|) in the problem's sense (< 0: ours is the better "
             "point)."), "",
             ("| program | training (data incl.) | raw mean / max gap | raw infeasible | optimal after polish "
             "| max distance to CVXPY (1e-11) | objective excess over CVXPY | documented path, s/instance "
             "| forward + polish | ratio | CVXPY + Clarabel | speed-up | OSQP direct (eps 1e-6) | speed-up "
             "| break-even (instances) |"),
             "|" + "---|" * 15]
    for spec, entry in results.items():
        if "diverged" in entry:
            lines.append(f"| {spec} | diverged: {entry['diverged']} |" + " |" * 13)
            continue
        lines.append(" | ".join([
            f"| {spec}", cell(entry, "train_seconds", "{:.0f} s"),
            f"{cell(entry, 'raw_mean_gap', '{:.2%}')} / {cell(entry, 'raw_max_gap', '{:.2%}')}",
            cell(entry, "raw_infeasible", "{:.0%}"), cell(entry, "optimal_after_polish", "{:.0%}"),
            cell(entry, "max_distance_to_cvxpy", "{:.1e}"), cell(entry, "max_objective_excess_over_cvxpy", "{:.1e}"),
            cell(entry, "documented_seconds", "{:.2e}"),
            cell(entry, "forward_polish_seconds", "{:.2e}"), cell(entry, "documented_over_direct", "{:.2f}"),
            cell(entry, "cvxpy_seconds", "{:.2e}"), cell(entry, "speedup_vs_cvxpy", "{:.1f}x"),
            cell(entry, "osqp_seconds", "{:.2e}"), cell(entry, "speedup_vs_osqp", "{:.1f}x"),
            cell(entry, "break_even", "{:.2g}")]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", default=",".join(PROGRAMS))
    parser.add_argument("--out", default="benchmarks/results/your-program.json")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from --out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting for every program (e.g. loss=mse: supervised instead of the default)")
    args = parser.parse_args()
    report = Path(args.out).with_name(f"RESULTS-{Path(args.out).stem}.md")
    if args.render:
        report.write_text(markdown(json.loads(Path(args.out).read_text()), args.set))
        return
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.programs.split(","):
            results[spec] = assess(spec, Path(scratch) / Path(spec).stem, dict(kv.split("=", 1) for kv in args.set))
            print(spec, json.dumps(results[spec]), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
            report.write_text(markdown(results, args.set))


if __name__ == "__main__":
    main()
