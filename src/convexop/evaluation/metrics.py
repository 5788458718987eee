"""Scoring a trained run on its test set: per-instance errors, then means; the in-basis floor; for
exact families the certificates of the answers (residual, gap, violation, certified fraction)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import read_dataset
from ..families import Family, get_family
from ..models.base import OperatorModel, atomic_write_bytes, from_checkpoint
from ..serving.answers import DEFAULT_TOL, statuses
from ..training.run import load_config, to_split
from ..training.trainer import per_instance_metrics


def best_approximation_mse(family: Family, targets: np.ndarray) -> np.ndarray:
    """(n,) per-instance MSE of the L2 projection of each target onto the basis (the rank floor)."""
    t = torch.as_tensor(targets, dtype=torch.float64)
    projected = family.decode(family.project(t))
    return family.error(projected, t).numpy()


def summarise(values: np.ndarray) -> dict[str, float | None]:
    """mean, median and max (strict JSON: None where not finite, e.g. a NaN answer)."""
    values = np.asarray(values, dtype=np.float64)
    stats = (np.mean(values), np.median(values), np.max(values)) if values.size else (np.nan,) * 3
    return {k: float(v) if np.isfinite(v) else None for k, v in zip(("mean", "median", "max"), stats)}


def certificate_metrics(model: OperatorModel, params: np.ndarray, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """What a user of an exact family needs of the model's answers (zero start) on the instances
    params (n, P): residual, gap and violation summaries, the fraction certified at tol (status
    `optimal`), the status counts, and the distance to the in-basis optimum."""
    family = model.family
    theta = torch.as_tensor(params, dtype=torch.float64)
    model.set_inference(start="zero")
    with torch.no_grad():
        x = family.finalise(model.coefficients(theta.float()))
    certificate = family.certificate(x, theta)
    finite = torch.isfinite(x).all(-1).numpy()
    counts: dict[str, int] = {}
    for status, _ in statuses(True, certificate, finite, tol):
        counts[status] = counts.get(status, 0) + 1
    optimum = torch.as_tensor(family.in_basis_optimum(params))
    out = {"tol": tol, "certified_fraction": float(certificate.certified(tol).double().mean()), "status": counts,
           "residual": summarise(certificate.residual.numpy()), "violation": summarise(certificate.violation.numpy()),
           "gap": None if certificate.gap is None else summarise(certificate.gap.numpy()),
           "in_basis_distance": summarise((x - optimum).norm(dim=-1).numpy())}
    model.set_inference(start="random")
    return out


def evaluate_model(model: OperatorModel, run_dir: Path) -> dict[str, Any]:
    """Metrics of `model` on RUN_DIR/train.h5 and test.h5 (random start, seeded 0)."""
    family = model.family
    out: dict[str, Any] = {"family": family.name, "model": model.model_name,
                           "parameters": model.parameter_count(), "exact": family.exact}
    label_free = not (run_dir / "train.h5").is_file() and (run_dir / "test.h5").is_file()
    for split in ("train", "test"):  # label-free runs (loss=objective) solve no training instance
        data = read_dataset(run_dir / f"{'test' if label_free else split}.h5", family)
        tensors = to_split(data, next(model.parameters()).device.type)
        model.eval()
        torch.manual_seed(0)
        metrics = per_instance_metrics(model, tensors)
        out[split] = {"mse": summarise(metrics["mse"].cpu().numpy()),
                      "relative_l2": summarise(metrics["relative_l2"].cpu().numpy()),
                      "n": len(data.params),
                      "best_approximation_mse": float(best_approximation_mse(family, data.targets).mean())}
        if split == "test":
            out["test"]["per_instance_mse"] = [v if math.isfinite(v) else None for v in metrics["mse"].cpu().tolist()]
            if family.exact and model.has_coefficients:
                out["test"]["certificate"] = certificate_metrics(model, data.params)
    history = run_dir / "history.csv"
    if history.is_file():
        lines = history.read_text().strip().splitlines()
        if len(lines) > 1:
            out["training_seconds"] = float(lines[-1].split(",")[-1])
    return out


def evaluate_run(run_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    family = get_family(config.family, **config.family_config)
    model = from_checkpoint(run_dir, family=family)
    metrics = evaluate_model(model, run_dir)
    target = Path(out) if out else run_dir / "metrics.json"
    atomic_write_bytes(target, json.dumps(metrics, indent=2, allow_nan=False).encode())
    return metrics


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3e}"


def metrics_table(metrics: dict) -> list[str]:
    """A short table of `evaluate`'s metrics: errors per split, and the certificate on exact families."""
    lines = [f"{metrics['model']} on {metrics['family']} ({metrics['parameters']} parameters)",
             f"{'':24}{'mean':>12}{'median':>12}{'max':>12}"]
    for split in ("train", "test"):
        for key in ("mse", "relative_l2"):
            stats = metrics[split][key]
            lines.append(f"{split + ' ' + key:24}"
                         + "".join(f"{_number(stats[k]):>12}" for k in ("mean", "median", "max")))
    lines.append(f"{'in-basis floor (MSE)':24}{_number(metrics['test']['best_approximation_mse']):>12}")
    certificate = metrics["test"].get("certificate")
    if certificate:
        for key in ("residual", "gap", "violation", "in_basis_distance"):
            if certificate[key] is not None:
                lines.append(f"{'test ' + key:24}" + "".join(f"{_number(certificate[key][k]):>12}"
                                                            for k in ("mean", "median", "max")))
        counts = ", ".join(f"{v} {k}" for k, v in sorted(certificate["status"].items()))
        lines.append(f"certified at {certificate['tol']:g}: {100 * certificate['certified_fraction']:.1f}% ({counts}; "
                     "raw answers, before polishing)")
    return lines
