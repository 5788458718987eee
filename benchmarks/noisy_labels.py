"""Robustness to noisy training labels (the GEO paper's first open check).

    python benchmarks/noisy_labels.py [--steps 300] [--out benchmarks/results/noisy-labels.json]

Supervised GEO training on heat-pde and elliptic-pde with Gaussian label noise of standard deviation
sigma x (the training targets' RMS), sigma in {0, 1e-3, 1e-2, 1e-1} (`--set label_noise=SIGMA`), and,
where the family is exact, label-free training (`loss=objective`, which sees no label). Test MSE on
the clean test set of the same data seed. One thread; `--steps` steps each (family defaults
otherwise).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from convexop.families import FAMILIES
from convexop.training.config import resolve_config
from convexop.training.run import train_run

SIGMAS = (0.0, 1e-3, 1e-2, 1e-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/results/noisy-labels.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in ("heat-pde", "elliptic-pde"):
            results[name] = {}
            runs = [(f"sigma={sigma:g}", {"label_noise": str(sigma)}) for sigma in SIGMAS]
            if FAMILIES[name].exact:
                runs.append(("label-free", {"loss": "objective"}))
            for label, extra in runs:
                settings = {"steps": str(args.steps), "eval_every": str(args.steps), "tensorboard": "false"} | extra
                config = resolve_config(FAMILIES[name], "geo", settings)
                folder = Path(scratch) / f"{name}-{label}"
                started = time.perf_counter()
                _, history = train_run(config, folder)
                results[name][label] = {"test_mse": history[-1]["test_mse"],
                                        "test_relative_l2": history[-1]["test_relative_l2"],
                                        "seconds": time.perf_counter() - started}
                print(name, label, json.dumps(results[name][label]), flush=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
