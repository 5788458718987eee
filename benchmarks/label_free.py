"""Label-free (loss=objective) against supervised training at equal wall time, data generation included.

    python benchmarks/label_free.py [--steps 600] [--out benchmarks/results/label-free.json]

Per exact family: a supervised GEO (the family's defaults, `--steps` steps; its wall time includes the
reference solves of the training set), then a label-free GEO given the same wall time (steps scaled
from a short timing run; only the test set is solved). Both are scored on the same test set: test MSE
against the reference, the mean relative objective gap to the in-basis optimum, the median certificate
measure and the fraction certified at 1e-6. One thread.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from convexop.data import read_dataset
from convexop.families import FAMILIES
from convexop.training.config import resolve_config
from convexop.training.run import train_run

FAMILY_SETTINGS = {"toy-box": {"depth": "10", "width": "8", "init": "forward-backward", "step": "0.2"},
                   "elliptic-pde": {}, "hedging": {}}


def score(model, test) -> dict:
    family = model.family
    theta = torch.as_tensor(test.params)
    model.set_inference(start="zero")
    with torch.no_grad():
        x = family.finalise(model.coefficients(theta.float()))
    optimum = torch.as_tensor(family.in_basis_optimum(test.params))
    value, best = family.objective(x, theta), family.objective(optimum, theta)
    certificate = family.certificate(x, theta)
    mse = family.error(family.decode(x), torch.as_tensor(test.targets, dtype=torch.float64))
    gap = (value - best) / best.abs().clamp_min(1)
    return {"test_mse": float(mse.mean()), "mean_relative_gap": float(gap.mean()),
            "median_measure": float(certificate.measure.median()),
            "certified_1e-6": float(certificate.certified(1e-6).double().mean())}


def run(name: str, settings: dict, folder: Path) -> tuple[object, float]:
    config = resolve_config(FAMILIES[name], "geo", settings | {"tensorboard": "false"})
    started = time.perf_counter()
    model, _ = train_run(config, folder)
    return model, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", default="benchmarks/results/label-free.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, extra in FAMILY_SETTINGS.items():
            base = extra | {"steps": str(args.steps), "eval_every": str(args.steps)}
            supervised, sup_seconds = run(name, base, Path(scratch) / f"{name}-sup")
            test = read_dataset(Path(scratch) / f"{name}-sup" / "test.h5", supervised.family)
            probe = max(20, args.steps // 10)
            _, probe_seconds = run(name, base | {"loss": "objective", "steps": str(probe), "eval_every": str(probe)},
                                   Path(scratch) / f"{name}-probe")
            steps = max(probe, int(args.steps * 1.0 if probe_seconds <= 0 else probe * sup_seconds / probe_seconds))
            free, free_seconds = run(name, base | {"loss": "objective", "steps": str(steps), "eval_every": str(steps)},
                                     Path(scratch) / f"{name}-free")
            results[name] = {"supervised": {"steps": args.steps, "seconds": sup_seconds} | score(supervised, test),
                             "label_free": {"steps": steps, "seconds": free_seconds} | score(free, test)}
            print(name, json.dumps(results[name]), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
