"""`convexop bench`: the performance targets, measured side by side in one run.

Each case trains (through the same `train_run` as the CLI), scores against references and returns
rows {case, metric, value, target, met, setting}. `run_bench` writes `results.json` and a
human-readable `RESULTS.md` (both atomically). `quick=True` shrinks every budget so the whole
suite runs in a couple of minutes (numbers then only show that the pipeline works).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data import generate, read_dataset
from ..errors import InputError
from ..families import Family, get_family
from ..models.base import atomic_write_bytes, build_model, from_checkpoint
from ..training.config import resolve_config
from ..training.run import train_run
from . import plots
from .metrics import evaluate_model

Row = dict[str, Any]
CASES: dict[str, Callable[[Path, bool], list[Row]]] = {}


def case(name: str):
    def register(function):
        CASES[name] = function
        return function
    return register


def row(case_name: str, metric: str, value: float, target: str | None = None,
        met: bool | None = None, setting: str = "") -> Row:
    return {"case": case_name, "metric": metric, "value": value, "target": target, "met": met,
            "setting": setting}


def _train(run_dir: Path, family: str, model: str, settings: dict[str, Any]) -> tuple[Any, dict, float]:
    """Train a run from `settings` (the `--set` keys), return (model, metrics, seconds)."""
    get_family(family)  # validates the name and registers every family
    family_cls = Family.registry[family]
    config = resolve_config(family_cls, model, {k: str(v) for k, v in settings.items()})
    config.training.tensorboard = False
    started = time.perf_counter()
    train_run(config, run_dir)
    seconds = time.perf_counter() - started
    fam = get_family(config.family, **config.family_config)
    trained = from_checkpoint(run_dir, family=fam)
    metrics = evaluate_model(trained, run_dir)
    return trained, metrics, seconds


def _setting(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _mse_on(model, law: str, n: int, seed: int) -> np.ndarray:
    """Per-instance MSE of `model` (zero start) on n fresh instances of `law`."""
    family = model.family
    data = generate(family, n, seed, law=law)
    model.eval()
    model.set_inference(start="zero")
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        predicted = model.values(torch.as_tensor(data.params, dtype=dtype))
        return family.error(predicted, torch.as_tensor(data.targets, dtype=dtype)).numpy()


def _heat_rows(name: str, metrics: dict, seconds: float, settings: dict, target_mse: float | None,
               max_params: int | None = None, max_seconds: float | None = None) -> list[Row]:
    s = _setting(settings)
    mse = metrics["test"]["mse"]["mean"]
    rows = [row(name, "test MSE vs accurate reference", mse,
                None if target_mse is None else f"<= {target_mse:g}",
                None if target_mse is None else mse <= target_mse, s),
            row(name, "test relative L2", metrics["test"]["relative_l2"]["mean"], setting=s),
            row(name, "test MSE floor of the basis", metrics["test"]["best_approximation_mse"], setting=s),
            row(name, "parameters", metrics["parameters"],
                None if max_params is None else f"<= {max_params}",
                None if max_params is None else metrics["parameters"] <= max_params, s),
            row(name, "training seconds", seconds,
                None if max_seconds is None else f"<= {max_seconds:g}",
                None if max_seconds is None else seconds <= max_seconds, s)]
    return rows


PAPER = {"depth": 10, "width": 20}


@case("heat-pde-paper")
def heat_paper(out: Path, quick: bool) -> list[Row]:
    """Paper-size GEO (R=8 unscaled, L=10, M=20), our optimiser (the default `train heat-pde`)."""
    settings = dict(PAPER, steps=300 if quick else 4000)
    model, metrics, seconds = _train(out / "heat-pde-paper", "heat-pde", "geo", settings)
    rows = _heat_rows("heat-pde-paper", metrics, seconds, settings, 2e-3, 4000, 300)
    rows += _multilevel_picard_rows("heat-pde-paper", model, 3 if quick else 20)
    return rows


def _multilevel_picard_rows(name: str, model, n: int) -> list[Row]:
    """The paper scores against multilevel Picard: how far is that reference from the accurate one,
    and how far is the GEO from it (the paper's "MSE below 0.02")."""
    from ..references.multilevel_picard import multilevel_picard_heat

    family = model.family
    data = generate(family, n, seed=12345)
    rng = np.random.default_rng(0)
    points = family.basis.points
    started = time.perf_counter()
    picard = np.stack([multilevel_picard_heat(float(nu), points, rng=rng) for nu in data.params[:, 0]])
    per_nu = (time.perf_counter() - started) / n
    model.eval()
    model.set_inference(start="zero")
    with torch.no_grad():
        predicted = model.values(torch.as_tensor(data.params)).numpy()
    setting = f"{n} nu from the training law, 5 levels"
    return [row(name, "multilevel Picard reference MSE vs accurate", float(((picard - data.targets) ** 2).mean()),
                setting=setting),
            row(name, "GEO test MSE vs multilevel Picard reference", float(((predicted - picard) ** 2).mean()),
                "<= 0.02 (paper)", float(((predicted - picard) ** 2).mean()) <= 0.02, setting),
            row(name, "multilevel Picard seconds per nu", per_nu, setting=setting)]


@case("heat-pde-authors-optimiser")
def heat_authors(out: Path, quick: bool) -> list[Row]:
    """Paper size with the authors' optimiser: Adam lr 1e-4 constant, full batch (budget cut)."""
    settings = dict(PAPER, lr=1e-4, schedule="constant", steps=300 if quick else 6000)
    _, metrics, seconds = _train(out / "heat-pde-authors", "heat-pde", "geo", settings)
    return _heat_rows("heat-pde-authors-optimiser", metrics, seconds, settings, None)


@case("heat-pde-best")
def heat_best(out: Path, quick: bool) -> list[Row]:
    """Best configuration found: Hermite functions of u/0.6, rank 12, L=10, M=20, cosine lr 3e-3."""
    settings = dict(PAPER, rank=12, scale=0.6, lr=3e-3, steps=300 if quick else 6000)
    _, metrics, seconds = _train(out / "heat-pde-best", "heat-pde", "geo", settings)
    return _heat_rows("heat-pde-best", metrics, seconds, settings, 1e-4, 20000, 600)


def saved_tensor_bytes(model, theta: torch.Tensor, target: torch.Tensor) -> tuple[int, float]:
    """Bytes held for backward by one training step (saved-tensor hooks) and its wall seconds."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    model.train()
    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = ((model.values(theta) - target) ** 2).mean()
    loss.backward()
    model.zero_grad()
    return total[0], time.perf_counter() - started


EQUILIBRIUM_MODEL = {"depth": 30, "width": 16, "mode": "equilibrium", "init": "scaled", "contraction": 0.9,
                     "backward": "phantom"}
EQUILIBRIUM = dict(EQUILIBRIUM_MODEL, lr=3e-3, grad_clip=1.0)


@case("equilibrium-vs-unrolled")
def equilibrium(out: Path, quick: bool) -> list[Row]:
    """Weight-tied GEO at its fixed point (Anderson forward, phantom backward, width 16 so that it has
    <= 1/L of the unrolled parameters) against the paper-size unrolled GEO, same budget."""
    steps = 300 if quick else 2000
    unrolled = dict(PAPER, steps=steps)
    tied = dict(EQUILIBRIUM, steps=steps)
    m_u, met_u, sec_u = _train(out / "heat-pde-unrolled", "heat-pde", "geo", unrolled)
    m_e, met_e, sec_e = _train(out / "heat-pde-equilibrium", "heat-pde", "geo", tied)
    rows = _heat_rows("equilibrium-vs-unrolled (unrolled)", met_u, sec_u, unrolled, None)
    target = 1.05 * met_u["test"]["mse"]["mean"]  # "reaches": within 5%
    rows += _heat_rows("equilibrium-vs-unrolled (equilibrium)", met_e, sec_e, tied, target,
                       met_u["parameters"] // PAPER["depth"])
    family = m_u.family
    data = generate(family, 400, seed=7)
    theta, target_values = torch.as_tensor(data.params), torch.as_tensor(data.targets)
    # memory held for backward at equal forward iterations (30), same weights
    probe = {}
    for label in ("implicit", "phantom", "unrolled"):
        torch.manual_seed(0)
        model = build_model("geo", family, **dict(EQUILIBRIUM_MODEL, backward=label))
        model.load_state_dict(m_e.state_dict())
        probe[label] = saved_tensor_bytes(model, theta, target_values)
    s = "30 forward iterations, batch 400, tensors saved for backward"
    for label in ("implicit", "phantom"):
        ratio = probe[label][0] / probe["unrolled"][0]
        rows.append(row("equilibrium-vs-unrolled", f"backward memory {label} / unrolled", ratio, "<= 1/3",
                        ratio <= 1 / 3, s))
    # test-time compute: more inference iterations, lower error, until the fixed point
    budgets, mses, residuals = [1, 2, 3, 5, 10, 20, 50, 100], [], []
    test = read_dataset(out / "heat-pde-equilibrium" / "test.h5", family)
    test_theta, test_target = torch.as_tensor(test.params), torch.as_tensor(test.targets)
    m_e.eval()
    m_e.set_inference(start="zero")
    with torch.no_grad():
        for budget in budgets:
            m_e.inference_iterations = budget
            mses.append(float(family.error(m_e.values(test_theta), test_target).mean()))
            residuals.append(float(m_e.last_stats.residual.mean()))
    stats = m_e.last_stats
    plots.error_against_iterations(budgets, mses, residuals, out / "equilibrium_iterations.png",
                                   met_u["test"]["mse"]["mean"])
    for budget, mse in zip(budgets, mses):
        rows.append(row("equilibrium-vs-unrolled", f"test MSE at {budget} inference iterations", mse,
                        setting="zero start, Anderson m=5"))
    rows += [row("equilibrium-vs-unrolled", "seconds per training step, unrolled GEO (L=10)", sec_u / steps,
                 setting=_setting(unrolled)),
             row("equilibrium-vs-unrolled", "seconds per training step, equilibrium GEO", sec_e / steps,
                 setting=_setting(tied)),
             row("equilibrium-vs-unrolled", "inference: Anderson iterations (mean)", float(stats.iterations.float().mean()),
                 setting="tol 1e-5, budget 100"),
             row("equilibrium-vs-unrolled", "inference: fraction converged", float(stats.converged.float().mean()),
                 setting="tol 1e-5, budget 100")]
    return rows


@case("toy-box")
def toy_box(out: Path, quick: bool) -> list[Row]:
    """The authors' min_op toy: in-distribution and the paper's out-of-distribution test, against the
    true box minimiser, plus throughput against CVXPY and our batched FISTA."""
    settings = {"steps": 300 if quick else 3000}
    model, metrics, seconds = _train(out / "toy-box", "toy-box", "geo", settings)
    s = _setting(settings)
    ood = _mse_on(model, "ood", 200 if quick else 2000, seed=99)
    rows = [row("toy-box", "test squared error (d * MSE) in distribution", 2 * metrics["test"]["mse"]["mean"],
                setting=s),
            row("toy-box", "test squared error (d * MSE) out of distribution", 2 * float(ood.mean()),
                "< 0.70 (authors' code, measured)", 2 * float(ood.mean()) < 0.70, s),
            row("toy-box", "parameters", metrics["parameters"], setting=s),
            row("toy-box", "training seconds", seconds, setting=s)]
    rows += _throughput_rows(model, 1000 if quick else 10000)
    return rows


def _throughput_rows(model, n: int) -> list[Row]:
    """Instances per second: the GEO's batched forward on n instances against CVXPY one by one."""
    family = model.family
    theta = torch.as_tensor(family.sample(n, np.random.default_rng(5)))
    model.eval()
    model.set_inference(start="zero")
    with torch.no_grad():
        model.coefficients(theta)  # warm-up
        started, repeats = time.perf_counter(), 5
        for _ in range(repeats):
            model.coefficients(theta)
        geo_rate = repeats * n / (time.perf_counter() - started)
    rows = [row("toy-box", "GEO instances per second (batched forward)", geo_rate, setting=f"batch {n}, 1 thread")]
    try:
        import cvxpy  # noqa: F401
    except ImportError:
        return rows
    count = 20
    started = time.perf_counter()
    for params in theta[:count]:
        _cvxpy_toy(family.split_theta(params[None]))
    cvx_rate = count / (time.perf_counter() - started)
    rows.append(row("toy-box", "CVXPY (Clarabel) instances per second", cvx_rate, setting=f"{count} instances"))
    rows.append(row("toy-box", "GEO / CVXPY throughput", geo_rate / cvx_rate, ">= 100", geo_rate / cvx_rate >= 100))
    return rows


def _cvxpy_toy(parts: dict[str, torch.Tensor]) -> np.ndarray:
    import cvxpy as cp

    a = parts["A"][0].numpy()
    b, c = parts["b"][0].numpy(), float(parts["c"][0])
    beta, kappa = parts["beta"][0].numpy(), float(parts["kappa"][0])
    x = cp.Variable(2)
    a = (a + a.T) / 2
    objective = 0.5 * cp.quad_form(x, cp.psd_wrap(a)) + b @ x + c + cp.log_sum_exp(
        cp.hstack([beta[0] * x[0], beta[1] * x[1], np.log(kappa) * np.ones(1)]))
    problem = cp.Problem(cp.Minimize(objective), [x >= -1, x <= 1])
    problem.solve(solver=cp.CLARABEL)
    return np.asarray(x.value)


@case("elliptic-pde")
def elliptic(out: Path, quick: bool) -> list[Row]:
    """Exact elliptic-pde: GEO against the finite-difference reference and the in-basis optimum,
    polishing against a cold start, and the GEO's forward against FISTA run to the GEO's accuracy."""
    from ..references.forward_backward import fista
    from .polish import compare_with_cold_start

    settings = {"steps": 100 if quick else 1000}
    model, metrics, seconds = _train(out / "elliptic-pde", "elliptic-pde", "geo", settings)
    s = _setting(settings)
    family = model.family
    n = 50 if quick else 1000
    theta = torch.as_tensor(family.sample(n, np.random.default_rng(11)))
    optimum = torch.as_tensor(family.in_basis_optimum(theta.numpy()))
    model.eval()
    model.set_inference(start="zero")
    with torch.no_grad():
        model.coefficients(theta.float())  # warm-up
        started = time.perf_counter()
        answer = model.coefficients(theta.float()).double()
        geo_seconds = time.perf_counter() - started
        target = family.decode(optimum)
        geo_error = ((family.decode(answer) - target) ** 2).mean(-1)
    tol = float(geo_error.median())
    started = time.perf_counter()
    result = fista(lambda index: family.program(theta[index]), torch.zeros_like(optimum), tol, 100000,
                   measure=lambda z, index: ((family.decode(z) - target[index]) ** 2).mean(-1))
    fista_seconds = time.perf_counter() - started
    comparison = compare_with_cold_start(family, answer, theta, 1e-6)
    rows = [row("elliptic-pde", "test MSE vs finite-difference reference", metrics["test"]["mse"]["mean"], setting=s),
            row("elliptic-pde", "test relative L2", metrics["test"]["relative_l2"]["mean"], setting=s),
            row("elliptic-pde", "in-basis floor (best approximation MSE)", metrics["test"]["best_approximation_mse"],
                setting=s),
            row("elliptic-pde", "MSE vs in-basis optimum (median)", tol, setting=f"{n} instances"),
            row("elliptic-pde", "parameters", metrics["parameters"], setting=s),
            row("elliptic-pde", "training seconds", seconds, setting=s),
            row("elliptic-pde", "GEO forward seconds", geo_seconds, setting=f"{n} instances, 1 batch"),
            row("elliptic-pde", "FISTA seconds to the GEO's median accuracy", fista_seconds,
                setting=f"{n} instances, zero start, mean {float(result.iterations.double().mean()):.1f} iterations"),
            row("elliptic-pde", "FISTA / GEO time at equal accuracy", fista_seconds / geo_seconds, "> 1",
                fista_seconds > geo_seconds),
            row("elliptic-pde", "polish to residual 1e-6: cold / warm iterations", comparison["ratio"], ">= 5",
                comparison["ratio"] >= 5,
                f"warm {comparison['warm_mean']:.1f}, cold {comparison['cold_mean']:.1f} iterations")]
    return rows


def log_linear_fit(sizes: list[int], errors: list[float]) -> tuple[float, float]:
    """Least-squares fit log(error) = a + slope * size; returns (slope, R^2)."""
    x, y = np.asarray(sizes, float), np.log(np.asarray(errors, float))
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean()) ** 2).sum()
    return float(slope), float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan")


@case("log-complexity")
def log_complexity(out: Path, quick: bool) -> list[Row]:
    """The paper's O(log 1/eps) depth claim on elliptic-pde: error against the in-basis optimum as
    depth L grows (M = 20, R = 8, same budget), with a log-linear fit; the plot goes to the bench folder."""
    depths = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 12, 16]
    steps = 100 if quick else 600
    family = get_family("elliptic-pde")
    theta = torch.as_tensor(family.sample(200, np.random.default_rng(13)))
    optimum = family.decode(torch.as_tensor(family.in_basis_optimum(theta.numpy())))
    errors = []
    for depth in depths:
        settings = {"depth": depth, "steps": steps}
        model, _, _ = _train(out / f"log-complexity-L{depth}", "elliptic-pde", "geo", settings)
        model.eval()
        model.set_inference(start="zero")
        with torch.no_grad():
            predicted = model.family.decode(model.coefficients(theta.float()).double())
        errors.append(float(((predicted - optimum) ** 2).mean()))
    slope, r2 = log_linear_fit(depths, errors)
    plots.error_against_size(depths, errors, "depth L", out / "log_complexity_depth.png", slope, r2)
    s = f"elliptic-pde, M=20, R=8, {steps} steps each, 200 instances"
    rows = [row("log-complexity", f"MSE vs in-basis optimum at L={d}", e, setting=s) for d, e in zip(depths, errors)]
    rows += [row("log-complexity", "slope of log(MSE) per layer", slope, "< 0 (error falls geometrically)", slope < 0, s),
             row("log-complexity", "R^2 of the log-linear fit", r2, setting=s)]
    return rows


def run_bench(out: str | Path, quick: bool = False, only: list[str] | None = None,
              callback: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the chosen cases into `out`; write results.json and RESULTS.md; return the results."""
    names = only or list(CASES)
    for name in names:
        if name not in CASES:
            raise InputError("--only", name, "one of " + ", ".join(CASES))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rows: list[Row] = []
    timings = {}
    for name in names:
        if callback:
            callback(name)
        started = time.perf_counter()
        rows += CASES[name](out, quick)
        timings[name] = time.perf_counter() - started
    results = {"version": __version__, "quick": quick, "machine": _machine(), "cases": timings, "rows": rows}
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=2, default=float).encode())
    atomic_write_bytes(out / "RESULTS.md", render_markdown(results).encode())
    return results


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.2e}"
    return str(value)


def render_markdown(results: dict[str, Any]) -> str:
    lines = ["# convexop benchmark results", "",
             f"convexop {results['version']}; {results['machine']}; quick={results['quick']}.", "",
             "| case | metric | value | target | met | setting |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['case']} | {r['metric']} | {_fmt(r['value'])} | {r['target'] or ''} | {met} | "
                     f"{r['setting']} |")
    lines += ["", "Case wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in results["cases"].items()), ""]
    return "\n".join(lines)
