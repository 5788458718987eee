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

CSV_FIELDS = ["model", "problem", "width", "step", "loss", "grad_norm", "distance", "hessian_norm",
              "hessian_block_a", "hessian_block_b", "hessian_block_ab"]


def curves_csv(pairs: list[dict[str, Any]]) -> str:
    """One row per model, problem, width and iteration; hessian_norm empty where not estimated. The block
    columns (--hessian-blocks): a = branch-branch (DeepONet) / spectral-spectral (FNO), b = trunk-trunk /
    pointwise-pointwise, ab = the cross block branch-trunk / spectral-pointwise."""
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(CSV_FIELDS)
    for pair in pairs:
        model, problem = pair["settings"]["model"], pair["settings"]["problem"]
        for r in pair["results"]:
            hessian = {step: value for step, value in r["hessian"]}
            blocks = {step: norms for step, norms in r.get("hessian_blocks", [])}
            for step, (loss, grad, distance) in enumerate(zip(r["loss"], r["grad_norm"], r["distance"])):
                block = [f"{blocks[step][k]:.6e}" if step in blocks else "" for k in ("a", "b", "ab")]
                writer.writerow([model, problem, r["width"], step, f"{loss:.6e}", f"{grad:.6e}", f"{distance:.6e}",
                                 f"{hessian[step]:.6e}" if step in hessian else ""] + block)
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


def _blocks_against_width(pairs: list[dict[str, Any]], out: Path) -> Path:
    """One panel per pair: each block's norm against width, at initialisation (dashed) and at the end."""
    figure, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.2), squeeze=False,
                                constrained_layout=True)
    for axis, pair in zip(axes[0], pairs):
        v = pair["verdict"]
        blocks = v["hessian_blocks"]
        for key, colour in (("a", "tab:blue"), ("b", "tab:orange"), ("ab", "tab:green")):
            axis.loglog(v["widths"], blocks["final"][key], "o-", color=colour, label=f"{blocks['names'][key]} (end)")
            axis.loglog(v["widths"], blocks["initial"][key], "s--", color=colour, alpha=0.6, ms=3,
                        label=f"{blocks['names'][key]} (init)")
        axis.set_title(f"{pair['settings']['model']} / {pair['settings']['problem']}", fontsize=10)
        axis.set_xlabel("width")
        axis.set_ylabel("block spectral norm")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=7)
    figure.suptitle("Hessian blocks (power iteration on Hessian-vector products, one fixed batch)")
    return save_figure(figure, out)


def draw(pairs: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Per pair: loss, gradient norm, distance and Hessian norm against iteration, one line per width;
    over all pairs: final loss against width, final Hessian norm against width, and (when estimated)
    the Hessian block norms against width."""
    figures = [_pair_figure(p, folder / f"curves_{p['settings']['model']}_{p['settings']['problem']}.png")
               for p in pairs]
    figures.append(_against_width(pairs, "final_loss", "final training loss", folder / "final_loss_vs_width.png"))
    figures.append(_against_width(pairs, "final_hessian_norm", "Hessian spectral norm at the end",
                                  folder / "hessian_vs_width.png"))
    with_blocks = [p for p in pairs if p["verdict"].get("hessian_blocks")]
    if with_blocks:
        figures.append(_blocks_against_width(with_blocks, folder / "hessian_blocks_vs_width.png"))
    return figures


def radius_figure(result: dict[str, Any], out: Path) -> Path:
    """The radius study (radius.py): rho against width on log-log axes, one marker per seed (open where
    censored), the geometric mean over seeds, the fitted power law and a sqrt(width) reference."""
    import numpy as np

    figure, axis = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for row in result["rows"]:
        axis.loglog(row["width"], row["rho"], "o", color="tab:gray", alpha=0.6, ms=4,
                    mfc="none" if row["censored"] else "tab:gray")
    table = result["table"]
    widths = np.array([t["width"] for t in table], dtype=float)
    axis.loglog(widths, [t["rho"] for t in table], "o-", color="tab:blue", label="rho (geometric mean over seeds)")
    fit = result["fit_width"]
    if fit["exponent"] is not None:
        axis.loglog(widths, np.exp(fit["intercept"]) * widths ** fit["exponent"], "--", color="tab:red",
                    label=f"fit: width^{fit['exponent']:.2f}, R^2 {fit['r2']:.2f}")
        anchor = np.exp(fit["intercept"]) * np.exp(np.log(widths).mean()) ** fit["exponent"]
        axis.loglog(widths, anchor * (widths / np.exp(np.log(widths).mean())) ** 0.5, ":", color="black",
                    label="sqrt(width) reference")
    settings = result["settings"]
    axis.set_xlabel("width")
    axis.set_ylabel("largest recovering rho (Euclidean)")
    axis.set_title(f"radius: {settings['model']} / {settings['problem']}, {settings['probe_steps']} Adam steps, "
                   f"margin {settings['margin']:g}", fontsize=10)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return save_figure(figure, out)
