"""Accuracy against parameter count: GEO, DeepONet, FNO and MLP at about 1e3, 1e4 and 1e5 parameters
(GEO: its natural sizes, up to ~1e4) on heat-pde, elliptic-pde and toy-box.

Every model of a family trains on the same data set (generated once, the family's default
n_instances / split / seed), with the family's default optimiser settings (lr, schedule),
mini-batches of BATCH instances and the same number of steps; the test error is the family's test
MSE against its reference (heat-pde: the accurate PDE solution, which the GEO learns supervised;
elliptic-pde: the finite-difference solution; toy-box: the true box minimiser). The GEO's error is
bounded below by its basis floor (the best approximation of the reference in R Hermite functions);
the baselines predict the 500 values directly and have no such floor. The target (DESIGN.md
section 7): the GEO reaches the best baseline's test error with at most 1/10 of its parameters, on
two of the three families.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data import Dataset, write_dataset
from ..families import FAMILIES, get_family
from ..training.config import resolve_config
from ..training.run import prepare_data
from .cases import Row, case, row, train_case_model

PDE_SIZES = {
    "geo": [{"depth": 2, "width": 16}, {"depth": 10, "width": 20},
            {"depth": 10, "width": 24, "rank": 12}],
    "deeponet": [{"width": 14}, {"width": 48}, {"width": 156}],
    "mlp": [{"width": 2, "depth": 2}, {"width": 18}, {"width": 160}],
    "fno": [{"width": 4, "modes": 8, "depth": 2}, {"width": 8, "modes": 16, "depth": 4},
            {"width": 16, "modes": 64, "depth": 3}],
}
TOY_SIZES = {
    "geo": [{"depth": 10, "width": 8, "init": "forward-backward", "step": 0.2},
            {"depth": 20, "width": 20, "init": "forward-backward", "step": 0.2},
            {"depth": 40, "width": 60, "init": "forward-backward", "step": 0.2}],
    "deeponet": [{"width": 14}, {"width": 48}, {"width": 156}],
    "mlp": [{"width": 26}, {"width": 94}, {"width": 310}],
    "fno": [{"width": 8, "modes": 2, "depth": 2}, {"width": 24, "modes": 2, "depth": 4},
            {"width": 80, "modes": 2, "depth": 4}],
}
SIZES = {"heat-pde": PDE_SIZES, "elliptic-pde": PDE_SIZES, "toy-box": TOY_SIZES}
BATCH = 100  # mini-batches: the baselines leave their initial plateau in ~1,000 steps (full batch: ~2,000)
_DATA: dict[str, tuple[Dataset, Dataset]] = {}


def prepare_shared(run_dir: Path, family_name: str, model: str, settings: dict[str, Any]) -> None:
    """Write run_dir/train.h5 and test.h5 for a run of `settings`, generating each data set only
    once per process (keyed by the family configuration and the data keys), so that every model of
    a family trains and tests on the same instances."""
    get_family(family_name)
    config = resolve_config(FAMILIES[family_name], model, {k: str(v) for k, v in settings.items()})
    t = config.training
    key = json.dumps([family_name, config.family_config, t.n_instances, t.test_fraction, t.data_seed, t.test_law],
                     sort_keys=True, default=str)
    run_dir.mkdir(parents=True, exist_ok=True)
    if key in _DATA:
        for split, data in zip(("train", "test"), _DATA[key]):
            write_dataset(run_dir / f"{split}.h5", data)
    else:
        family = get_family(family_name, **config.family_config)
        _DATA[key] = prepare_data(family, config, run_dir)


def train_sized(out: Path, family_name: str, model: str, size: dict[str, Any], steps: int) -> dict[str, Any]:
    """Train one model of one size; returns its parameters, test MSE, basis floor and seconds."""
    settings = dict(size, steps=steps, batch_size=BATCH)
    label = "-".join(f"{k}{v}" for k, v in size.items())
    run_dir = out / "sizes" / family_name / f"{model}-{label}"
    prepare_shared(run_dir, family_name, model, settings)
    _, metrics, seconds = train_case_model(run_dir, family_name, model, settings)
    return {"model": model, "size": size, "parameters": metrics["parameters"],
            "mse": metrics["test"]["mse"]["mean"], "floor": metrics["test"]["best_approximation_mse"],
            "seconds": seconds}


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The best baseline (lowest test MSE) and the best GEO with <= 1/10 of its parameters."""
    baselines = [r for r in results if r["model"] != "geo"]
    best = min(baselines, key=lambda r: r["mse"])
    small = [r for r in results if r["model"] == "geo" and 10 * r["parameters"] <= best["parameters"]]
    geo = min(small, key=lambda r: r["mse"]) if small else None
    return {"best": best, "geo": geo, "ratio": geo["mse"] / best["mse"] if geo else float("inf"),
            "met": bool(geo and geo["mse"] <= best["mse"])}


def _name(r: dict[str, Any]) -> str:
    return f"{r['model']} ({r['parameters']:,} params)"


@case("accuracy-vs-parameters")
def accuracy_vs_parameters(out: Path, quick: bool) -> list[Row]:
    """GEO, DeepONet, FNO and MLP at about 1e3, 1e4 and 1e5 parameters on heat-pde, elliptic-pde and
    toy-box: test MSE against parameter count, and whether the GEO reaches the best baseline's test
    error with at most 1/10 of its parameters."""
    from . import plots  # matplotlib only when a case draws

    steps = 1000 if quick else 5000
    rows, plotted, met = [], {}, 0
    for family_name, sizes in SIZES.items():
        results = [train_sized(out, family_name, model, size, steps) for model, options in sizes.items()
                   for size in options]
        plotted[family_name] = {}
        for r in results:
            plotted[family_name].setdefault(r["model"], []).append((r["parameters"], r["mse"]))
            detail = ", ".join(f"{k}={v}" for k, v in r["size"].items())
            rows.append(row("accuracy-vs-parameters", f"{family_name}: {_name(r)} test MSE", r["mse"],
                            setting=f"{detail}; {steps} steps of {BATCH}, {r['seconds']:.0f} s"
                                    + (f"; basis floor {r['floor']:.2e}" if r["model"] == "geo" else "")))
        v = verdict(results)
        met += v["met"]
        s = (f"best baseline {_name(v['best'])}; GEO {_name(v['geo'])}" if v["geo"] else
             f"best baseline {_name(v['best'])}; no GEO with <= 1/10 of its parameters")
        rows.append(row("accuracy-vs-parameters", f"{family_name}: GEO MSE / best baseline MSE (GEO <= 1/10 params)",
                        v["ratio"], "<= 1", v["met"], s))
    rows.append(row("accuracy-vs-parameters", "families where the GEO reaches the best baseline with <= 1/10 params",
                    met, ">= 2 of 3", met >= 2,
                    f"{steps} training steps of {BATCH} instances per model, same data and optimiser"))
    plots.error_against_parameters(plotted, out / "accuracy_vs_parameters.png")
    return rows
