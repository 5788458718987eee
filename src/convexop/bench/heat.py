"""The heat-pde benchmark cases (paper size, the authors' optimiser, the best configuration) and the
equilibrium GEO against the unrolled one (accuracy, backward memory, test-time compute)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data import generate, read_dataset
from ..evaluation import plots
from ..models.base import build_model
from .cases import Row, case, describe_setting, row, train_case_model


def _heat_rows(name: str, metrics: dict, seconds: float, settings: dict, target_mse: float | None,
               max_params: int | None = None, max_seconds: float | None = None) -> list[Row]:
    s = describe_setting(settings)
    mse = metrics["test"]["mse"]["mean"]
    rows = [row(name, "test MSE vs accurate reference", mse,
                None if target_mse is None else f"<= {target_mse:g}",
                None if target_mse is None else mse <= target_mse, s),
            row(name, "test relative L2", metrics["test"]["relative_l2"]["mean"], setting=s),
            row(name, "test MSE floor of the basis", metrics["test"]["best_approximation_mse"], setting=s),
            row(name, "parameters", metrics["parameters"],
                None if max_params is None else f"<= {max_params}",
                None if max_params is None else metrics["parameters"] <= max_params, s),
            row(name, "training seconds", seconds,
                None if max_seconds is None else f"<= {max_seconds:g}",
                None if max_seconds is None else seconds <= max_seconds, s)]
    return rows


PAPER = {"depth": 10, "width": 20}


@case("heat-pde-paper")
def heat_paper(out: Path, quick: bool) -> list[Row]:
    """Paper-size GEO (R=8 unscaled, L=10, M=20), our optimiser (the default `train heat-pde`)."""
    settings = dict(PAPER, steps=300 if quick else 4000)
    model, metrics, seconds = train_case_model(out / "heat-pde-paper", "heat-pde", "geo", settings)
    rows = _heat_rows("heat-pde-paper", metrics, seconds, settings, 2e-3, 4000, 300)
    rows += _multilevel_picard_rows("heat-pde-paper", model, 3 if quick else 20)
    return rows


def _multilevel_picard_rows(name: str, model, n: int) -> list[Row]:
    """The paper scores against multilevel Picard: how far is that reference from the accurate one,
    and how far is the GEO from it (the paper's "MSE below 0.02")."""
    from ..references.multilevel_picard import multilevel_picard_heat

    family = model.family
    data = generate(family, n, seed=12345)
    rng = np.random.default_rng(0)
    points = family.basis.points
    started = time.perf_counter()
    picard = np.stack([multilevel_picard_heat(float(nu), points, rng=rng) for nu in data.params[:, 0]])
    per_nu = (time.perf_counter() - started) / n
    model.eval()
    model.set_inference(start="zero")
    with torch.no_grad():
        predicted = model.values(torch.as_tensor(data.params)).numpy()
    setting = f"{n} nu from the training law, 5 levels"
    return [row(name, "multilevel Picard reference MSE vs accurate", float(((picard - data.targets) ** 2).mean()),
                setting=setting),
            row(name, "GEO test MSE vs multilevel Picard reference", float(((predicted - picard) ** 2).mean()),
                "<= 0.02 (paper)", float(((predicted - picard) ** 2).mean()) <= 0.02, setting),
            row(name, "multilevel Picard seconds per nu", per_nu, setting=setting)]


@case("heat-pde-authors-optimiser")
def heat_authors(out: Path, quick: bool) -> list[Row]:
    """Paper size with the authors' optimiser: Adam lr 1e-4 constant, full batch (budget cut)."""
    settings = dict(PAPER, lr=1e-4, schedule="constant", steps=300 if quick else 6000)
    _, metrics, seconds = train_case_model(out / "heat-pde-authors", "heat-pde", "geo", settings)
    return _heat_rows("heat-pde-authors-optimiser", metrics, seconds, settings, None)


@case("heat-pde-best")
def heat_best(out: Path, quick: bool) -> list[Row]:
    """Best configuration found: Hermite functions of u/0.6, rank 12, L=10, M=20, cosine lr 3e-3."""
    settings = dict(PAPER, rank=12, scale=0.6, lr=3e-3, steps=300 if quick else 6000)
    _, metrics, seconds = train_case_model(out / "heat-pde-best", "heat-pde", "geo", settings)
    return _heat_rows("heat-pde-best", metrics, seconds, settings, 1e-4, 20000, 600)


def saved_tensor_bytes(model, theta: torch.Tensor, target: torch.Tensor) -> tuple[int, float]:
    """Bytes held for backward by one training step (saved-tensor hooks) and its wall seconds."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    model.train()
    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = ((model.values(theta) - target) ** 2).mean()
    loss.backward()
    model.zero_grad()
    return total[0], time.perf_counter() - started


EQUILIBRIUM_MODEL = {"depth": 30, "width": 16, "mode": "equilibrium", "init": "scaled", "contraction": 0.9,
                     "backward": "phantom"}
EQUILIBRIUM = dict(EQUILIBRIUM_MODEL, lr=3e-3, grad_clip=1.0)


@case("equilibrium-vs-unrolled")
def equilibrium(out: Path, quick: bool) -> list[Row]:
    """Weight-tied GEO at its fixed point (Anderson forward, phantom backward, width 16 so that it has
    <= 1/L of the unrolled parameters) against the paper-size unrolled GEO, same budget."""
    steps = 300 if quick else 2000
    unrolled = dict(PAPER, steps=steps)
    tied = dict(EQUILIBRIUM, steps=steps)
    m_u, met_u, sec_u = train_case_model(out / "heat-pde-unrolled", "heat-pde", "geo", unrolled)
    m_e, met_e, sec_e = train_case_model(out / "heat-pde-equilibrium", "heat-pde", "geo", tied)
    rows = _heat_rows("equilibrium-vs-unrolled (unrolled)", met_u, sec_u, unrolled, None)
    target = 1.05 * met_u["test"]["mse"]["mean"]  # "reaches": within 5%
    rows += _heat_rows("equilibrium-vs-unrolled (equilibrium)", met_e, sec_e, tied, target,
                       met_u["parameters"] // PAPER["depth"])
    family = m_u.family
    data = generate(family, 400, seed=7)
    theta, target_values = torch.as_tensor(data.params), torch.as_tensor(data.targets)
    # memory held for backward at equal forward iterations (30), same weights
    probe = {}
    for label in ("implicit", "phantom", "unrolled"):
        torch.manual_seed(0)
        model = build_model("geo", family, **dict(EQUILIBRIUM_MODEL, backward=label))
        model.load_state_dict(m_e.state_dict())
        probe[label] = saved_tensor_bytes(model, theta, target_values)
    s = "30 forward iterations, batch 400, tensors saved for backward"
    for label in ("implicit", "phantom"):
        ratio = probe[label][0] / probe["unrolled"][0]
        rows.append(row("equilibrium-vs-unrolled", f"backward memory {label} / unrolled", ratio, "<= 1/3",
                        ratio <= 1 / 3, s))
    # test-time compute: more inference iterations, lower error, until the fixed point
    budgets, mses, residuals = [1, 2, 3, 5, 10, 20, 50, 100], [], []
    test = read_dataset(out / "heat-pde-equilibrium" / "test.h5", family)
    test_theta, test_target = torch.as_tensor(test.params), torch.as_tensor(test.targets)
    m_e.eval()
    m_e.set_inference(start="zero")
    with torch.no_grad():
        for budget in budgets:
            m_e.inference_iterations = budget
            mses.append(float(family.error(m_e.values(test_theta), test_target).mean()))
            residuals.append(float(m_e.last_stats.residual.mean()))
    stats = m_e.last_stats
    plots.error_against_iterations(budgets, mses, residuals, out / "equilibrium_iterations.png",
                                   met_u["test"]["mse"]["mean"])
    for budget, mse in zip(budgets, mses):
        rows.append(row("equilibrium-vs-unrolled", f"test MSE at {budget} inference iterations", mse,
                        setting="zero start, Anderson m=5"))
    rows += [row("equilibrium-vs-unrolled", "seconds per training step, unrolled GEO (L=10)", sec_u / steps,
                 setting=describe_setting(unrolled)),
             row("equilibrium-vs-unrolled", "seconds per training step, equilibrium GEO", sec_e / steps,
                 setting=describe_setting(tied)),
             row("equilibrium-vs-unrolled", "inference: Anderson iterations (mean)",
                 float(stats.iterations.float().mean()), setting="tol 1e-5, budget 100"),
             row("equilibrium-vs-unrolled", "inference: fraction converged", float(stats.converged.float().mean()),
                 setting="tol 1e-5, budget 100")]
    return rows
