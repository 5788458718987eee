"""Benchmark: a GEO on `utility-max` (experiment 2), trained and scored against both references.

    .venv/bin/python benchmarks/utility_max.py --out runs/utility-max [--set key=value ...]
        [--skip-train] [--no-optimum]

Trains with the family's default configuration (plus `--set` overrides) exactly as
`convexop train utility-max --model geo` does, then scores the test instances (the held-out 20%):
  - test MSE and relative L2 of the strategy pi against the closed-form Merton strategy
    (per instance over the 500 x 100 sample points, then the mean), as `convexop evaluate`;
  - the same for the best in-basis approximation of the closed form (the floor of the basis);
  - relative L2 against the in-basis optimum of the sampled program, and the objective gap
    g(x) - g(x_opt) (x feasible or not), for the GEO and for the best approximation;
  - feasibility of the GEO's strategies (pi >= 0 at every point, X_T >= floor on every path);
  - relative L2 on 100 instances of the shifted law "ood" (floor ~ Exp(scale 1), truncated);
  - parameter count, training time (the trainer's wall clock), seconds per step.
The GEO is read from x_0 = 0 (as `solve`); `evaluate` uses a seeded random start (std 0.01).
Prints a table and writes RUN/benchmark.json.
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
from convexop.evaluation.metrics import evaluate_run
from convexop.families import UtilityMax, get_family
from convexop.models.base import from_checkpoint
from convexop.training.config import resolve_config
from convexop.training.run import load_config, train_run


def relative_l2(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(predicted - target, axis=1) / np.linalg.norm(target, axis=1)


def stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def score(run_dir: Path, optimum: bool = True) -> dict:
    config = load_config(run_dir)
    family = get_family(config.family, **config.family_config)
    model = from_checkpoint(run_dir, family=family)
    model.set_inference(start="zero")
    model.eval()
    test = read_dataset(run_dir / "test.h5", family)
    theta = test.params
    reference = family.reference(theta)  # float64 (the stored targets are float32)
    with torch.no_grad():
        started = time.perf_counter()
        x = model.coefficients(torch.as_tensor(theta, dtype=torch.float32)).double()
        forward_seconds = time.perf_counter() - started
    t64 = torch.as_tensor(theta)
    predicted = family.decode(x).numpy()
    best = family.best_approximation(theta)
    best_values = family.decode(torch.as_tensor(best)).numpy()
    wealth = family.terminal_wealth(x).numpy()
    out = {
        "family_config": config.family_config, "model_kwargs": config.model_kwargs,
        "training": config.to_json()["training"], "parameters": model.parameter_count(),
        "n_test": len(theta),
        "geo_vs_closed_form": {"mse": stats(((predicted - reference) ** 2).mean(1)),
                               "relative_l2": stats(relative_l2(predicted, reference))},
        "best_approximation_vs_closed_form": {"mse": stats(((best_values - reference) ** 2).mean(1)),
                                              "relative_l2": stats(relative_l2(best_values, reference))},
        "geo_vs_best_approximation_relative_l2": stats(relative_l2(predicted, best_values)),
        "geo_feasible_fraction": float(np.mean((predicted.min(1) >= 0) & (wealth.min(1) >= theta[:, 1]))),
        "geo_min_pi": float(predicted.min()),
        "geo_forward_seconds_per_instance": forward_seconds / len(theta),
    }
    ood = family.sample(len(theta), np.random.default_rng(1), "ood")  # floor ~ Exp(1), truncated
    with torch.no_grad():
        x_ood = model.coefficients(torch.as_tensor(ood, dtype=torch.float32)).double()
    ood_reference = family.reference(ood)
    ood_relative = relative_l2(family.decode(x_ood).numpy(), ood_reference)
    out["ood_vs_closed_form"] = {"relative_l2": stats(ood_relative),
                                 "mse": stats(((family.decode(x_ood).numpy() - ood_reference) ** 2).mean(1)),
                                 "mean_floor": float(ood[:, 1].mean())}
    if optimum:
        started = time.perf_counter()
        x_opt = family.in_basis_optimum(theta)
        solve_seconds = time.perf_counter() - started
        opt_values = family.decode(torch.as_tensor(x_opt)).numpy()
        g_opt = family.g(torch.as_tensor(x_opt), t64).numpy()
        g_geo = family.g(x, t64).numpy()
        g_best = family.g(torch.as_tensor(best), t64).numpy()
        out["in_basis_optimum"] = {
            "solver_seconds_per_instance": solve_seconds / len(theta),
            "geo_relative_l2": stats(relative_l2(predicted, opt_values)),
            "closed_form_relative_l2": stats(relative_l2(reference, opt_values)),
            "geo_objective_gap": stats(g_geo - g_opt),
            "best_approximation_objective_gap": stats(g_best - g_opt),
            "geo_relative_objective_gap": stats((g_geo - g_opt) / np.abs(g_opt)),
            "mean_optimal_objective": float(g_opt.mean()),
        }
    history = (run_dir / "history.csv").read_text().strip().splitlines()
    last = history[-1].split(",")
    out["training_seconds"] = float(last[-1])
    out["seconds_per_step"] = float(last[-1]) / int(last[0])
    out["machine"] = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                      f"torch threads {torch.get_num_threads()}")
    return out


def table(result: dict, cli_metrics: dict) -> str:
    rows = [
        ("parameters", f"{result['parameters']:,}"),
        ("training time (wall)", (f"{result['training_seconds']:.0f} s ({result['seconds_per_step']:.3f} s/step, "
                                  f"{result['training']['steps']} steps)")),
        ("training CPU time (data + training)", "n/a" if result.get("training_cpu_seconds") is None
         else f"{result['training_cpu_seconds']:.0f} s"),
        ("test MSE vs closed form (evaluate, random start)", f"{cli_metrics['test']['mse']['mean']:.3e}"),
        ("test rel. L2 vs closed form (evaluate)", f"{100 * cli_metrics['test']['relative_l2']['mean']:.2f}%"),
        ("test MSE vs closed form (x0 = 0)", f"{result['geo_vs_closed_form']['mse']['mean']:.3e}"),
        ("test rel. L2 vs closed form (x0 = 0): mean / median / max",
         " / ".join(f"{100 * result['geo_vs_closed_form']['relative_l2'][k]:.2f}%" for k in ("mean", "median", "max"))),
        ("best in-basis approximation: rel. L2 vs closed form (mean / max)",
         (f"{100 * result['best_approximation_vs_closed_form']['relative_l2']['mean']:.4f}% / "
          f"{100 * result['best_approximation_vs_closed_form']['relative_l2']['max']:.4f}%")),
        ("GEO rel. L2 vs best approximation", f"{100 * result['geo_vs_best_approximation_relative_l2']['mean']:.2f}%"),
        ("OOD test (floor ~ Exp(1) truncated): rel. L2 mean / median",
         (f"{100 * result['ood_vs_closed_form']['relative_l2']['mean']:.2f}% / "
          f"{100 * result['ood_vs_closed_form']['relative_l2']['median']:.2f}%")),
        ("GEO strategies feasible (pi >= 0, X_T >= floor)", f"{100 * result['geo_feasible_fraction']:.0f}%"),
    ]
    if "in_basis_optimum" in result:
        o = result["in_basis_optimum"]
        rows += [
            ("in-basis optimum: solver seconds per instance", f"{o['solver_seconds_per_instance']:.2f}"),
            ("in-basis optimum: GEO rel. L2", f"{100 * o['geo_relative_l2']['mean']:.1f}%"),
            ("in-basis optimum: closed form rel. L2", f"{100 * o['closed_form_relative_l2']['mean']:.1f}%"),
            ("objective gap g(x) - g(x_opt): GEO (mean / max)",
             f"{o['geo_objective_gap']['mean']:.2e} / {o['geo_objective_gap']['max']:.2e}"),
            ("objective gap: best approximation (mean / max)",
             (f"{o['best_approximation_objective_gap']['mean']:.2e} / "
              f"{o['best_approximation_objective_gap']['max']:.2e}")),
            ("mean optimal objective g(x_opt)", f"{o['mean_optimal_objective']:.4f}"),
        ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def write_plots(run_dir: Path) -> list[str]:
    """Loss curves and the strategy along two sample paths for two test instances: GEO vs the
    closed form vs the best in-basis approximation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convexop.evaluation.plots import loss_curves

    config = load_config(run_dir)
    family = get_family(config.family, **config.family_config)
    model = from_checkpoint(run_dir, family=family)
    model.set_inference(start="zero")
    model.eval()
    test = read_dataset(run_dir / "test.h5", family)
    theta = test.params[:2]
    reference = family.reference(theta)
    with torch.no_grad():
        predicted = family.decode(model.coefficients(torch.as_tensor(theta, dtype=torch.float32)).double()).numpy()
    best = family.decode(torch.as_tensor(family.best_approximation(theta))).numpy()
    n_times = config.family_config.get("n_times", 100)
    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = [str(loss_curves(run_dir, folder / "loss.png"))]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    times = np.asarray(family.points)[:n_times, 0]
    for row, k in enumerate(range(2)):
        for column, path in enumerate((0, 1)):
            axis = axes[row][column]
            part = slice(path * n_times, (path + 1) * n_times)
            axis.plot(times, reference[k, part], "k-", lw=2, label="closed form")
            axis.plot(times, best[k, part], "g:", lw=1.5, label="best in basis")
            axis.plot(times, predicted[k, part], "r--", lw=1.5, label="GEO")
            axis.set_title(f"eta={theta[k, 0]:.2f}, floor={theta[k, 1]:.2f}, path {path}")
            axis.grid(alpha=0.3)
    axes[0][0].legend()
    for axis in axes[1]:
        axis.set_xlabel("t")
    for axis in axes[:, 0]:
        axis.set_ylabel("amount in the stock")
    figure.savefig(folder / "strategy_paths.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    written.append(str(folder / "strategy_paths.png"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/utility-max")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-train", action="store_true", help="score an existing run")
    parser.add_argument("--no-optimum", action="store_true", help="skip the in-basis optimum")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.skip_train:
        overrides = dict(pair.split("=", 1) for pair in args.set)
        config = resolve_config(UtilityMax, "geo", overrides)

        def progress(row):
            print(f"step {row['step']:5d}  train MSE {row['train_mse']:.3e}  test MSE {row['test_mse']:.3e}  "
                  f"test rel L2 {100 * row['test_relative_l2']:.2f}%  lr {row['lr']:.1e}  {row['seconds']:.0f}s",
                  flush=True)

        cpu = time.process_time()
        train_run(config, out, callback=progress)
        cpu_seconds = time.process_time() - cpu
    else:
        cpu_seconds = None
    cli_metrics = evaluate_run(out)
    result = score(out, optimum=not args.no_optimum)
    result["training_cpu_seconds"] = cpu_seconds
    result["evaluate"] = {k: v for k, v in cli_metrics.items() if k != "test"} | {
        "test": {k: v for k, v in cli_metrics["test"].items() if k != "per_instance_mse"}}
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(f"\nGEO on utility-max ({result['n_test']} test instances; {result['machine']})")
    print(table(result, cli_metrics))
    print("plots: " + ", ".join(write_plots(out)))


if __name__ == "__main__":
    main()
