"""Figures and the CSV of the width study (see width.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ..evaluation.plots import save_figure

CSV_FIELDS = ["model", "problem", "width", "step", "loss", "grad_norm", "distance", "hessian_norm"]


def curves_csv(pairs: list[dict[str, Any]]) -> str:
    """One row per model, problem, width and iteration; hessian_norm empty where not estimated."""
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(CSV_FIELDS)
    for pair in pairs:
        model, problem = pair["settings"]["model"], pair["settings"]["problem"]
        for r in pair["results"]:
            hessian = {step: value for step, value in r["hessian"]}
            for step, (loss, grad, distance) in enumerate(zip(r["loss"], r["grad_norm"], r["distance"])):
                writer.writerow([model, problem, r["width"], step, f"{loss:.6e}", f"{grad:.6e}", f"{distance:.6e}",
                                 f"{hessian[step]:.6e}" if step in hessian else ""])
    return stream.getvalue()


def _pair_figure(pair: dict[str, Any], out: Path) -> Path:
    model, problem = pair["settings"]["model"], pair["settings"]["problem"]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    colours = plt.cm.viridis([i / max(1, len(pair["results"]) - 1) for i in range(len(pair["results"]))])
    for colour, r in zip(colours, sorted(pair["results"], key=lambda r: r["width"])):
        label = f"width {r['width']}"
        axes[0, 0].semilogy(r["loss"], color=colour, label=label)
        axes[0, 1].semilogy(r["grad_norm"], color=colour, lw=0.8, label=label)
        axes[1, 0].plot(r["distance"], color=colour, label=label)
        if r["hessian"]:
            steps, values = zip(*r["hessian"])
            axes[1, 1].semilogy(steps, values, "o-", color=colour, ms=3, label=label)
    titles = ["training loss (MSE / mean target^2)", "gradient norm", "distance from initialisation",
              "Hessian spectral norm (power iteration)"]
    for axis, title in zip(axes.flat, titles):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(f"width study: {model} on {problem} (full-batch Adam, lr {pair['settings']['lr']:g})")
    return save_figure(figure, out)


def _against_width(pairs: list[dict[str, Any]], key: str, ylabel: str, out: Path) -> Path:
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    for pair in pairs:
        v = pair["verdict"]
        axis.loglog(v["widths"], v[key], "o-", label=f"{pair['settings']['model']} / {pair['settings']['problem']}")
    axis.set_xlabel("width")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return save_figure(figure, out)


def draw(pairs: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Per pair: loss, gradient norm, distance and Hessian norm against iteration, one line per width;
    over all pairs: final loss against width, final Hessian norm against width."""
    figures = [_pair_figure(p, folder / f"curves_{p['settings']['model']}_{p['settings']['problem']}.png")
               for p in pairs]
    figures.append(_against_width(pairs, "final_loss", "final training loss", folder / "final_loss_vs_width.png"))
    figures.append(_against_width(pairs, "final_hessian_norm", "Hessian spectral norm at the end",
                                  folder / "hessian_vs_width.png"))
    return figures
