"""Benchmark: the `hedging` family (experiment 3): references checked, then a GEO trained and scored.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hedging.py --out runs/hedging [--set key=value ...]
        [--skip-train] [--skip-mc] [--mc-paths 1000000] [--mc-steps 1000]

1. Heston prices (semi-closed form, references/heston.py) against an independent Monte Carlo
   (risk-neutral, log-Euler S + full-truncation v, --mc-paths paths, --mc-steps steps, plus a
   control-variate estimate and a coupled half-step run estimating the discretisation bias), for
   calls, puts, gap calls and gap puts.
2. The in-basis optimum (the family's target) against CVXPY (Clarabel) on the test instances, and
   its distance to the Heston reference (price, and strategy relative L2 over the 500 x 100 points).
3. The GEO, trained exactly as `convexop train hedging --model geo` (the family's defaults: training
   law calls / puts, test law "ood" = gap calls / gap puts) plus `--set` overrides, read from x_0 = 0
   as `solve` does, scored on the out-of-distribution test set against both references:
   price error (currency units), strategy relative L2 (per instance over the points, then the mean),
   objective gap g(x) - g(x_opt) (absolute and relative to g(x_opt)), certificate, parameter count,
   training time.
Prints the tables, writes RUN/benchmark.json and RUN/plots/*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from convexop.data import read_dataset
from convexop.families import Hedging, get_family
from convexop.models.base import from_checkpoint
from convexop.references import heston
from convexop.training.config import resolve_config
from convexop.training.run import load_config, train_run


def relative_l2(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(predicted - target, axis=1) / np.linalg.norm(target, axis=1)


def stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)), "max": float(values.max())}


def check_prices(n_paths: int, n_steps: int) -> list[dict]:
    market = heston.HestonModel()
    rows = [("call", 9.5, 9.5), ("call", 10.5, 10.5), ("put", 9.5, 9.5), ("put", 10.5, 10.5),
            ("gap_call", 9.3, 10.7), ("gap_call", 9.8, 10.2), ("gap_put", 10.7, 9.3), ("gap_put", 10.2, 9.8)]
    strike = np.array([r[1] for r in rows])
    trigger = np.array([r[2] for r in rows])
    put = np.array([r[0] in ("put", "gap_put") for r in rows])
    fourier = heston.gap_prices(market, np.array([market.s0]), np.array([market.v0]), market.maturity,
                                strike, trigger, put)[0]
    started = time.perf_counter()
    mc = heston.monte_carlo_gap_prices(market, strike, trigger, put, n_paths=n_paths, n_steps=n_steps)
    seconds = time.perf_counter() - started
    out = []
    for k, (payoff, s, t) in enumerate(rows):
        out.append({"payoff": payoff, "strike": s, "trigger": t, "fourier": float(fourier[k]),
                    "mc": float(mc["price"][k]), "se": float(mc["standard_error"][k]),
                    "z": float((mc["price"][k] - fourier[k]) / mc["standard_error"][k]),
                    "mc_cv": float(mc["price_cv"][k]), "se_cv": float(mc["standard_error_cv"][k]),
                    "z_cv": float((mc["price_cv"][k] - fourier[k]) / mc["standard_error_cv"][k]),
                    "bias": float(mc["bias"][k]), "bias_se": float(mc["bias_standard_error"][k]),
                    "paths": n_paths, "steps": n_steps, "seconds": seconds})
    return out


def check_optimum(family: Hedging, theta: np.ndarray, heston_values: np.ndarray, count: int = 20) -> dict:
    import cvxpy as cp

    optimum = family.in_basis_optimum(theta)
    values = family.basis.decode(optimum)
    payoff = family.payoff(torch.as_tensor(theta)).numpy()
    matrix = family.wealth_matrix
    deviations, gaps, started = [], [], time.perf_counter()
    for k in range(min(count, len(theta))):
        y = cp.Variable(family.rank)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(payoff[k] - matrix @ y) / len(matrix)),
                             [y[0] >= 0, y[0] <= 10])
        problem.solve(solver=cp.CLARABEL)
        deviations.append(np.abs(y.value - optimum[k]).max() / np.abs(optimum[k]).max())
        ours = family.g(torch.as_tensor(optimum[k:k + 1]), torch.as_tensor(theta[k:k + 1])).item()
        gaps.append(ours - problem.value)
    cvx_seconds = (time.perf_counter() - started) / len(deviations)
    started = time.perf_counter()
    family.in_basis_optimum(theta)
    ours_seconds = (time.perf_counter() - started) / len(theta)
    t = torch.as_tensor(theta)
    return {"cvxpy_max_relative_deviation": float(max(deviations)), "objective_minus_cvxpy_max": float(max(gaps)),
            "certificate_max": float(family.certificate(torch.as_tensor(optimum), t).max()),
            "cvxpy_seconds_per_instance": cvx_seconds, "exact_seconds_per_instance": ours_seconds,
            "vs_heston_price_error": stats(np.abs(values[:, 0] - heston_values[:, 0])),
            "vs_heston_strategy_relative_l2": stats(relative_l2(values[:, 1:], heston_values[:, 1:])),
            "heston_projection_relative_l2": stats(relative_l2(
                family.basis.decode(family.basis.project(heston_values))[:, 1:], heston_values[:, 1:]))}


def score_geo(run_dir: Path, family: Hedging, theta: np.ndarray, heston_values: np.ndarray) -> dict:
    model = from_checkpoint(run_dir, family=family)
    model.set_inference(start="zero")
    model.eval()
    t64 = torch.as_tensor(theta)
    with torch.no_grad():
        started = time.perf_counter()
        x = model.coefficients(t64.float()).double()
        forward = (time.perf_counter() - started) / len(theta)
    optimum = torch.as_tensor(family.in_basis_optimum(theta))
    values, target = family.decode(x).numpy(), family.decode(optimum).numpy()
    g_model, g_opt = family.g(x, t64).numpy(), family.g(optimum, t64).numpy()
    gap = g_model - g_opt
    kinds = np.round(theta[:, 0]).astype(int)
    history = (run_dir / "history.csv").read_text().strip().splitlines()
    seconds = float(history[-1].split(",")[-1])
    config = load_config(run_dir)
    out = {"parameters": model.parameter_count(), "training_seconds": seconds,
           "seconds_per_step": seconds / config.training.steps, "forward_seconds_per_instance": forward,
           "vs_optimum_price_error": stats(np.abs(values[:, 0] - target[:, 0])),
           "vs_heston_price_error": stats(np.abs(values[:, 0] - heston_values[:, 0])),
           "vs_optimum_strategy_relative_l2": stats(relative_l2(values[:, 1:], target[:, 1:])),
           "vs_heston_strategy_relative_l2": stats(relative_l2(values[:, 1:], heston_values[:, 1:])),
           "objective_gap": stats(gap), "relative_objective_gap": stats(gap / g_opt),
           "certificate": stats(family.certificate(x, t64).numpy()),
           "per_payoff": {}}
    for kind in sorted(set(kinds)):
        mask = kinds == kind
        out["per_payoff"][Hedging.parameters[0].choices[kind]] = {
            "price_error_vs_optimum": float(np.abs(values[mask, 0] - target[mask, 0]).mean()),
            "strategy_relative_l2_vs_optimum": float(relative_l2(values[mask, 1:], target[mask, 1:]).mean())}
    out["_arrays"] = {"values": values, "target": target, "model": model}
    return out


def plots(run_dir: Path, family: Hedging, model, theta: np.ndarray, heston_values: np.ndarray,
          arrays: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convexop.evaluation.plots import loss_curves

    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = [str(loss_curves(run_dir, folder / "loss.png"))]
    values, target = arrays["values"], arrays["target"]
    steps = len(family.times) - 1
    times = family.times[:-1]
    kinds = sorted(set(np.round(theta[:, 0]).astype(int)))
    figure, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.8), squeeze=False)
    axes = axes[0]
    for axis, kind in zip(axes, kinds):
        k = int(np.nonzero(np.round(theta[:, 0]) == kind)[0][0])
        for path, style in ((0, "-"), (1, "--")):
            cut = slice(1 + path * steps, 1 + (path + 1) * steps)
            axis.plot(times, heston_values[k, cut], "k" + style, lw=1.5, label=f"Heston MV hedge, path {path}")
            axis.plot(times, target[k, cut], "g" + style, lw=1.2, label=f"in-basis optimum, path {path}")
            axis.plot(times, values[k, cut], "r" + style, lw=1.0, label=f"GEO, path {path}")
        name = Hedging.parameters[0].choices[kind]
        axis.set_title(f"{name} K={theta[k, 1]:.2f}, K'={theta[k, 2]:.2f}: price GEO {values[k, 0]:.3f}, "
                       f"opt {target[k, 0]:.3f}, Heston {heston_values[k, 0]:.3f}", fontsize=8)
        axis.set_xlabel("t")
        axis.set_ylabel("shares theta_t")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.savefig(folder / "strategy_paths.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    written.append(str(folder / "strategy_paths.png"))
    # price against strike for each payoff type (gap options with the trigger held at 10.5 / 9.5)
    figure, axes = plt.subplots(1, 4, figsize=(18, 3.6))
    curves = (("call", 9.0, 10.0, None), ("put", 10.0, 11.0, None), ("gap_call", 9.0, 10.0, 10.5),
              ("gap_put", 10.0, 11.0, 9.5))
    for axis, (name, low, high, trigger) in zip(axes, curves):
        strike = np.linspace(low, high, 31)
        kind = Hedging.parameters[0].choices.index(name)
        grid = np.stack([np.full_like(strike, kind), strike, strike if trigger is None
                         else np.full_like(strike, trigger)], axis=1)
        with torch.no_grad():
            predicted = family.price(model.coefficients(torch.as_tensor(grid, dtype=torch.float32)).double()).numpy()
        optimum = family.market.s0 * family.in_basis_optimum(grid)[:, 0]
        exact = heston.gap_prices(family.market, np.array([family.market.s0]), np.array([family.market.v0]),
                                  family.market.maturity, grid[:, 1], grid[:, 2],
                                  np.full(len(strike), kind in (1, 3)))[0]
        axis.plot(strike, exact, "k-", lw=2, label="Heston")
        axis.plot(strike, optimum, "g--", lw=1.5, label="in-basis optimum (500 paths)")
        axis.plot(strike, predicted, "r:", lw=2, label="GEO")
        axis.set_title(name + ("" if trigger is None else f" (trigger {trigger:g})")
                       + (" [training payoff]" if trigger is None else " [out of distribution]"), fontsize=9)
        axis.set_xlabel("strike")
        axis.set_ylabel("price")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.savefig(folder / "price_vs_strike.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    written.append(str(folder / "price_vs_strike.png"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/hedging")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-train", action="store_true", help="score an existing run in --out")
    parser.add_argument("--skip-mc", action="store_true")
    parser.add_argument("--mc-paths", type=int, default=1_000_000)
    parser.add_argument("--mc-steps", type=int, default=1000)
    args = parser.parse_args()
    run_dir = Path(args.out)
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                               f"torch threads {torch.get_num_threads()}"}

    if not args.skip_mc:
        prices = check_prices(args.mc_paths, args.mc_steps)
        result["price_check"] = prices
        print(f"\n1. Heston price vs Monte Carlo ({args.mc_paths:,} paths, {args.mc_steps} log-Euler steps, "
              f"{prices[0]['seconds']:.0f} s)")
        print(f"{'payoff':>9} {'K':>5} {'trig':>5} {'Fourier':>9} {'MC':>9} {'SE':>8} {'z':>6} "
              f"{'MC (cv)':>9} {'SE (cv)':>8} {'z (cv)':>6} {'bias est.':>10}")
        for r in prices:
            print(f"{r['payoff']:>9} {r['strike']:5.2f} {r['trigger']:5.2f} {r['fourier']:9.5f} {r['mc']:9.5f} "
                  f"{r['se']:8.5f} {r['z']:6.2f} {r['mc_cv']:9.5f} {r['se_cv']:8.5f} {r['z_cv']:6.2f} "
                  f"{r['bias']:+10.6f}")

    overrides = dict(pair.split("=", 1) for pair in args.set)
    if not args.skip_train:
        config = resolve_config(Hedging, "geo", overrides)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise SystemExit(f"{run_dir} exists and is not empty (use --skip-train to score it)")
        train_run(config, run_dir)
    config = load_config(run_dir)
    family = get_family("hedging", **config.family_config)
    test = read_dataset(run_dir / "test.h5", family)
    theta = test.params
    started = time.perf_counter()
    heston_values = family.heston_reference(theta)
    heston_seconds = time.perf_counter() - started

    optimum = check_optimum(family, theta, heston_values)
    result["in_basis_optimum"] = optimum
    print(f"\n2. In-basis optimum on the {len(theta)} test instances (law {config.training.test_law})")
    print(f"   vs CVXPY (Clarabel), 20 instances: max relative coefficient deviation "
          f"{optimum['cvxpy_max_relative_deviation']:.1e}, objective - CVXPY's <= "
          f"{optimum['objective_minus_cvxpy_max']:.1e}; certificate <= {optimum['certificate_max']:.1e}; "
          f"{optimum['exact_seconds_per_instance'] * 1e3:.2f} ms vs CVXPY "
          f"{optimum['cvxpy_seconds_per_instance'] * 1e3:.0f} ms per instance")
    print(f"   vs Heston ({heston_seconds:.1f} s for prices + hedges at 50,000 points x {len(theta)}): "
          f"price error mean {optimum['vs_heston_price_error']['mean']:.4f} "
          f"(max {optimum['vs_heston_price_error']['max']:.4f}); strategy relative L2 mean "
          f"{optimum['vs_heston_strategy_relative_l2']['mean']:.1%} (best approximation of the hedge in the "
          f"basis: {optimum['heston_projection_relative_l2']['mean']:.1%})")

    geo = score_geo(run_dir, family, theta, heston_values)
    arrays = geo.pop("_arrays")
    result["geo"] = geo
    result["settings"] = {"model": config.model_kwargs, "training": config.to_json()["training"],
                          "family": config.family_config}
    m = config.model_kwargs
    print(f"\n3. GEO (R={family.rank}, L={m['depth']}, M={m['width']}, init {m['init']}, mode {m['mode']}; "
          f"{config.training.steps} steps, batch {config.training.batch_size}, lr {config.training.lr:g}, "
          f"grad clip {config.training.grad_clip:g}) on {len(theta)} test instances "
          f"(law {config.training.test_law}); start x_0 = 0")
    rows = [("price error vs in-basis optimum", geo["vs_optimum_price_error"], "{:.4f}", "<= 0.01"),
            ("price error vs Heston", geo["vs_heston_price_error"], "{:.4f}", "<= 0.03"),
            ("strategy rel. L2 vs in-basis optimum", geo["vs_optimum_strategy_relative_l2"], "{:.2%}", "<= 10%"),
            ("strategy rel. L2 vs Heston hedge", geo["vs_heston_strategy_relative_l2"], "{:.2%}", ""),
            ("objective gap g(x) - g(x_opt)", geo["objective_gap"], "{:.2e}", ""),
            ("relative objective gap", geo["relative_objective_gap"], "{:.2%}", ""),
            ("certificate (prox-gradient residual)", geo["certificate"], "{:.2e}", "")]
    print(f"   {'metric':<38} {'mean':>10} {'median':>10} {'max':>10}  target (on the mean)")
    for label, s, fmt, target in rows:
        print(f"   {label:<38} {fmt.format(s['mean']):>10} {fmt.format(s['median']):>10} "
              f"{fmt.format(s['max']):>10}  {target}")
    for name, p in geo["per_payoff"].items():
        print(f"   {name}: price error vs optimum {p['price_error_vs_optimum']:.4f}, "
              f"strategy rel. L2 vs optimum {p['strategy_relative_l2_vs_optimum']:.2%}")
    print(f"   parameters {geo['parameters']:,}; training {geo['training_seconds']:.0f} s "
          f"({geo['seconds_per_step'] * 1e3:.0f} ms/step); forward "
          f"{geo['forward_seconds_per_instance'] * 1e6:.0f} us/instance; machine {result['machine']}")
    result["plots"] = plots(run_dir, family, arrays.pop("model"), theta, heston_values, arrays)
    (run_dir / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {run_dir / 'benchmark.json'} and {', '.join(result['plots'])}")


if __name__ == "__main__":
    main()
