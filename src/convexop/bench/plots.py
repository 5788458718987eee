"""Figures of the solver and size benchmarks (time to accuracy, throughput against tolerance,
accuracy against parameter count). Written atomically; the log-complexity sweeps use
`evaluation.plots.error_against_size` and `sweeps.sweep_plot`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ..evaluation.plots import save_figure  # the one atomic figure writer (also selects the Agg backend)


def _tolerance_axis(axis, title: str) -> None:
    """A log-log panel against the certificate tolerance, tightest on the right."""
    axis.invert_xaxis()
    axis.set_xlabel("certificate tolerance")
    axis.set_title(title)
    axis.grid(alpha=0.3, which="both")


def _finish(figure, axes, ylabel: str, out: Path) -> Path:
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    return save_figure(figure, out)


def time_to_accuracy(curves: dict[str, dict[str, Any]], out: Path) -> Path:
    """Per family: milliseconds per instance to reach each certificate tolerance, GEO + warm polish
    against cold FISTA (one batch) and CVXPY (one by one)."""
    figure, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False)
    for axis, (name, result) in zip(axes[0], curves.items()):
        n = result["n"]
        tols = sorted(result["tolerances"], reverse=True)
        entries = [result["tolerances"][t] for t in tols]
        axis.loglog(tols, [1e3 * e["warm_seconds"] / n for e in entries], "o-", label="GEO + polish")
        axis.loglog(tols, [1e3 * e["cold_seconds"] / n for e in entries], "s--", label="FISTA from zero")
        cvx = [(t, 1e3 * e["cvxpy_seconds"]) for t, e in zip(tols, entries) if "cvxpy_seconds" in e]
        if cvx:
            axis.loglog(*zip(*cvx), "k^", label="CVXPY (Clarabel), per instance")
        axis.loglog([result["start_residual_median"]], [1e3 * result["forward_seconds"] / n], "r*", ms=12,
                    label="GEO forward alone (median residual)")
        _tolerance_axis(axis, f"{name} ({n} instances)")
    return _finish(figure, axes, "ms per instance", out)


def throughput_against_tolerance(curves: dict[str, dict[str, Any]], out: Path) -> Path:
    """Per family at one batch: instances per second of cold FISTA against the tolerance, with the
    GEO forward (at its median residual) and CVXPY marked."""
    figure, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False)
    for axis, (name, c) in zip(axes[0], curves.items()):
        axis.loglog(c["tolerances"], c["fista_rate"], "s--", label="FISTA from zero")
        axis.loglog(c["tolerances"], c["warm_rate"], "o-", label="GEO + polish")
        axis.loglog([c["geo_residual"]], [c["geo_rate"]], "r*", ms=12, label="GEO forward (median residual)")
        if c.get("cvxpy_rate"):
            axis.axhline(c["cvxpy_rate"], color="k", ls=":", label="CVXPY (Clarabel)")
        _tolerance_axis(axis, f"{name}, batch {c['batch']}")
    return _finish(figure, axes, "instances per second", out)


def error_against_parameters(results: dict[str, dict[str, list[tuple[int, float]]]], out: Path) -> Path:
    """Per family: test MSE against parameter count, one line per model."""
    figure, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.6), squeeze=False)
    for axis, (family, models) in zip(axes[0], results.items()):
        for model, points in models.items():
            points = sorted(points)
            axis.loglog([p for p, _ in points], [e for _, e in points], "o-", label=model)
        axis.set_xlabel("parameters")
        axis.set_title(family)
        axis.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("test MSE")
    axes[0][0].legend(fontsize=8)
    return save_figure(figure, out)
