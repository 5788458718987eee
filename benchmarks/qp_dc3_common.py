"""What the two DC3 QP benchmarks (qp_dc3.py, qp_dc3_1000.py) share: the run options, training a model
as `convexop train --model` does, scoring a solver's duals by the family's certificate, and writing the
results."""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from convexop import __version__
from convexop.families import FAMILIES
from convexop.training.config import default_model, resolve_config
from convexop.training.run import train_run

TOLS = (1e-3, 1e-6)


def run_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options every DC3 benchmark takes: the run folder, results folder, --set, --skip-train, the
    model (default: the family's), another run to compare, --quick."""
    parser.add_argument("--out", default=None, help=f"the run folder (default runs/{name} for geo, "
                        f"runs/{name}-gradient for geo-gradient)")
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--model", default=default_model(FAMILIES[name]),
                        help="the registered model to train (default: the family's, geo-gradient; or geo)")
    parser.add_argument("--compare", default=None, metavar="RUN",
                        help="another trained run (e.g. the paper's GEO) to score on the same test split")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (numbers meaningless)")


def run_folder(args: argparse.Namespace, name: str) -> Path:
    """--out, else runs/NAME (geo) or runs/NAME-gradient (geo-gradient)."""
    return Path(args.out or f"runs/{name}" + ("" if args.model == "geo" else "-" + args.model.removeprefix("geo-")))


def overrides_of(args: argparse.Namespace) -> dict[str, str]:
    """The --set overrides (a tiny budget first under --quick)."""
    overrides = dict(item.split("=", 1) for item in args.set)
    return {"steps": "2", "eval_every": "1", "depth": "2"} | overrides if args.quick else overrides


def train(run: Path, overrides: dict[str, str], name: str = "qp-dc3", model: str = "geo") -> dict:
    """Train the family `name`'s default `model` (plus overrides) into run, as `convexop train --model` does."""
    config = resolve_config(FAMILIES[name], model, overrides)
    config.training.tensorboard = False
    started = time.perf_counter()
    train_run(config, run)
    wall = time.perf_counter() - started
    out = {"wall_seconds": wall, "model_name": model, "model": config.model_kwargs,
           "training": config.to_json()["training"]}
    (run / "train_seconds.json").write_text(json.dumps(out))
    return out


def trained(run: Path, args: argparse.Namespace, name: str) -> dict:
    """The training record: read from the run under --skip-train, else a training now."""
    if args.skip_train:
        return json.loads((run / "train_seconds.json").read_text())
    return train(run, overrides_of(args), name, args.model)


def score_duals(family, name: str, duals: np.ndarray, seconds: float, theta: torch.Tensor, note: str = "",
                memory: float | None = None) -> dict:
    """A solver's duals scored by the family's certificate (any size of DC3's recipe); `memory` (MB, for
    the whole batch) adds the peak per instance."""
    z = torch.as_tensor(duals, dtype=torch.float64)
    z[:, family.equalities:] = z[:, family.equalities:].clamp_min(0)
    gap, violation = family.dual(theta).certificate(z, family.interior(theta))
    worst = torch.maximum(gap, violation)
    out = {"method": name, "instances": len(z), "seconds_per_instance": seconds / len(z),
           **{f"certified_{tol:g}": float((worst <= tol).float().mean()) for tol in TOLS},
           "max_gap": float(gap.max()), "max_violation": float(violation.max()), "note": note}
    return out if memory is None else out | {"peak_mb_per_instance": memory / len(z)}


def machine() -> str:
    """The machine line of the reports."""
    return (f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
            f"torch {torch.__version__}")


def write_results(result: dict, args: argparse.Namespace, name: str, markdown: Callable[[dict], str]) -> None:
    """RESULTS/NAME.json and RESULTS/RESULTS-NAME.md, and the report printed."""
    result["version"] = __version__
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    text = markdown(result)
    (results / f"RESULTS-{name}.md").write_text(text)
    print(text)
