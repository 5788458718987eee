"""The width study of "Optimization for Neural Operators can Benefit from Width" (arXiv 2502.00705).

For one model (DeepONet or FNO) and one problem (antiderivative, diffusion-reaction, Burgers),
every width is trained with the same data, the same seed (initialisation), the same optimiser
(full-batch Adam, constant learning rate) and the same number of iterations. Recorded per
iteration t, at the parameters theta_t before the update:
- the training loss L(theta_t) = MSE / mean(target^2) over the whole training set (the relative
  MSE: a fixed constant per problem, so 1 means "predicts zero");
- the gradient norm ||grad L(theta_t)||;
- the distance from initialisation ||theta_t - theta_0||;
and every `hessian_every` iterations (and at the last) an estimate of the Hessian's spectral norm:
power iteration on exact Hessian-vector products (double back-propagation), a fixed random start.
With `hessian_blocks` > 0 (off by default: it adds ~4 x hessian_blocks Hessian-vector products per
checkpoint), the same checkpoints also record the spectral norms of the Hessian blocks of the
paper's analysis (hessian.py: DeepONet branch-branch, trunk-trunk, branch-trunk; FNO spectral,
pointwise and their cross block) on one fixed batch, the first `hessian_batch` training functions.

Verdict per model x problem, from the data only: the paper's claim "wider networks reach lower
training loss, faster" is read as (a) the final training loss is non-increasing in width and
(b) the number of iterations to reach the worst width's final loss is non-increasing in width.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from ..errors import InputError
from ..families import get_family
from ..families.operator_learning import DATA_SEED, OPERATOR_PROBLEMS
from ..models.base import build_model

MODELS = ("deeponet", "fno")
PAPER_WIDTHS = (10, 50, 100, 200, 500)


@dataclass
class StudySettings:
    """One model x problem. `model_kwargs` are passed to the model besides `width`."""

    model: str
    problem: str
    widths: list[int]
    steps: int
    lr: float = 1e-3
    n_train: int = 200
    n_test: int = 100
    seed: int = 0
    data_seed: int = DATA_SEED
    hessian_every: int = 100
    hessian_iterations: int = 10
    hessian_blocks: int = 0
    hessian_batch: int = 32
    family_config: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        _need(self.model in MODELS, "--model", self.model, "one of " + ", ".join(MODELS))
        _need(self.problem in OPERATOR_PROBLEMS, "--problem", self.problem, "one of " + ", ".join(OPERATOR_PROBLEMS))
        _need(len(self.widths) >= 1 and all(isinstance(w, int) and 1 <= w <= 4096 for w in self.widths),
              "--widths", self.widths, "comma-separated integers in [1, 4096]")
        _need(self.steps >= 1, "--steps", self.steps, "integers >= 1")
        _need(0 < self.lr < 10, "--lr", self.lr, "(0, 10)")
        _need(self.n_train >= 1, "--n-train", self.n_train, "integers >= 1")
        _need(self.n_test >= 1, "--n-test", self.n_test, "integers >= 1")
        _need(self.hessian_every >= 1, "--hessian-every", self.hessian_every, "integers >= 1")
        _need(self.hessian_iterations >= 0, "--hessian-iterations", self.hessian_iterations, "integers >= 0 (0: off)")
        _need(0 <= self.hessian_blocks <= 10_000, "--hessian-blocks", self.hessian_blocks,
              "integers in [0, 10000] (power iterations per block; 0: off)")
        _need(self.hessian_batch >= 1, "--hessian-batch", self.hessian_batch, "integers >= 1")


# Presets. quick: all six pairs in <= 20 minutes on 2 cores, so the FNO runs at widths 8..64 on
# small data (the paper's 500 channels cost seconds per full-batch step on a CPU) and Hessians are
# estimated 6 times per run. full: the paper's widths 10..500 for both models.
_COMMON_MODEL = {"deeponet": {"depth": 3, "activation": "tanh", "scaling": "ntk"},
                 "fno": {"depth": 4, "modes": 8, "activation": "gelu", "scaling": "ntk"}}
_FAMILY = {"antiderivative": {}, "diffusion-reaction": {"stride": 3, "refine": 2}, "burgers": {"resolution": 256}}
_FNO_QUICK = [8, 16, 32, 64]
QUICK = {
    ("deeponet", "antiderivative"): {"widths": list(PAPER_WIDTHS), "steps": 1000, "n_train": 200},
    ("deeponet", "diffusion-reaction"): {"widths": list(PAPER_WIDTHS), "steps": 400, "n_train": 50},
    ("deeponet", "burgers"): {"widths": list(PAPER_WIDTHS), "steps": 600, "n_train": 100},
    ("fno", "antiderivative"): {"widths": _FNO_QUICK, "steps": 200, "n_train": 50},
    ("fno", "diffusion-reaction"): {"widths": _FNO_QUICK, "steps": 150, "n_train": 30,
                                    "family": {"stride": 9, "refine": 2}, "model_kwargs": {"modes": 4}},
    ("fno", "burgers"): {"widths": _FNO_QUICK, "steps": 200, "n_train": 50},
}
FULL = {pair: {"widths": list(PAPER_WIDTHS), "steps": 5000, "n_train": 1000} for pair in QUICK}


def preset(model: str, problem: str, quick: bool) -> StudySettings:
    chosen = (QUICK if quick else FULL)[(model, problem)]
    kwargs = dict(_COMMON_MODEL[model]) | chosen.get("model_kwargs", {})
    hessian_every = max(1, chosen["steps"] // (5 if quick else 10))
    return StudySettings(model=model, problem=problem, widths=list(chosen["widths"]), steps=chosen["steps"],
                         n_train=chosen["n_train"], n_test=100 if quick else 200, hessian_every=hessian_every,
                         hessian_iterations=8 if quick else 10,
                         family_config=dict(chosen.get("family", _FAMILY[problem])), model_kwargs=kwargs)


def study_data(settings: StudySettings, folder: Path, progress=None) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Generate (or reuse, if the configuration matches) folder/<problem>_{train,test}.h5."""
    family = get_family(settings.problem, **settings.family_config)
    tag = "_".join([settings.problem] + [f"{k}{v}" for k, v in sorted(settings.family_config.items())])
    paths = folder / f"{tag}_train.h5", folder / f"{tag}_test.h5"
    n = settings.n_train + settings.n_test
    if all(p.is_file() for p in paths):
        train, test = (datasets.read_dataset(p, family) for p in paths)
        if (len(train.params), len(test.params), train.attrs.get("seed")) == (settings.n_train, settings.n_test,
                                                                              settings.data_seed):
            return train, test
    full = datasets.generate(family, n, settings.data_seed, "train", progress)
    cut = settings.n_train
    train = datasets.Dataset(full.params[:cut], full.targets[:cut], full.points, full.attrs)
    test = datasets.Dataset(full.params[cut:], full.targets[cut:], full.points, full.attrs)
    folder.mkdir(parents=True, exist_ok=True)
    for path, split in zip(paths, (train, test)):
        datasets.write_dataset(path, split)
    return train, test


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def hessian_spectral_norm(loss_fn: Callable[[], torch.Tensor], parameters: list[torch.Tensor],
                          iterations: int, seed: int = 0) -> float:
    """Largest |eigenvalue| of the Hessian of loss_fn by power iteration on Hessian-vector products."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, parameters, create_graph=True)
    generator = torch.Generator().manual_seed(seed)
    vector = [torch.randn(p.shape, generator=generator).to(p) for p in parameters]
    norm = flat(vector).norm()
    vector = [v / norm for v in vector]
    value = float("nan")
    for index in range(iterations):
        product = torch.autograd.grad(grads, parameters, grad_outputs=vector, retain_graph=index < iterations - 1)
        norm = flat(product).norm()
        value = float(norm)
        if not math.isfinite(value) or value == 0.0:
            break
        vector = [p / norm for p in product]
    return value


def relative_l2(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (predicted - target).norm(dim=-1) / target.norm(dim=-1).clamp_min(1e-12)


def build_for_width(settings: StudySettings, width: int, train: datasets.Dataset):
    """(model, trainable parameters, loss_fn) at one width: the model initialised from `settings.seed`,
    loss_fn() = MSE / mean(target^2) over the training set; loss_fn(k): the same over its first k
    functions (the scale stays that of the whole set)."""
    family = get_family(settings.problem, **settings.family_config)
    torch.manual_seed(settings.seed)
    model = build_model(settings.model, family, width=width, **settings.model_kwargs)
    parameters = [p for p in model.parameters() if p.requires_grad]
    theta = torch.as_tensor(train.params, dtype=torch.float32)
    target = torch.as_tensor(train.targets, dtype=torch.float32)
    scale = float(target.pow(2).mean())

    def loss_fn(batch: int | None = None) -> torch.Tensor:
        if batch is None:
            return (model.values(theta) - target).pow(2).mean() / scale
        return (model.values(theta[:batch]) - target[:batch]).pow(2).mean() / scale

    return model, parameters, loss_fn


def train_width(settings: StudySettings, width: int, train: datasets.Dataset, test: datasets.Dataset,
                callback: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Full-batch Adam for `settings.steps` iterations at one width; returns the curves."""
    from . import hessian

    model, parameters, loss_fn = build_for_width(settings, width, train)
    theta = torch.as_tensor(train.params, dtype=torch.float32)
    target = torch.as_tensor(train.targets, dtype=torch.float32)

    def batch_loss() -> torch.Tensor:
        return loss_fn(settings.hessian_batch)

    start = flat([p.detach() for p in parameters]).clone()
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    curves: dict[str, Any] = {"width": width, "parameters": model.parameter_count(),
                              "initial_norm": float(start.norm()), "loss": [],
                              "grad_norm": [], "distance": [], "hessian": []}
    if settings.hessian_blocks:
        curves |= {"hessian_blocks": [], "hessian_block_names": hessian.block_names(settings.model),
                   "hessian_block_seconds": 0.0}
    started = time.perf_counter()
    for step in range(settings.steps + 1):
        checkpoint = step % settings.hessian_every == 0 or step == settings.steps
        if settings.hessian_iterations and checkpoint:
            curves["hessian"].append([step, hessian_spectral_norm(loss_fn, parameters, settings.hessian_iterations,
                                                                  seed=settings.seed)])
        if settings.hessian_blocks and checkpoint:
            clock = time.perf_counter()
            norms = hessian.model_block_norms(model, settings.model, batch_loss, settings.hessian_blocks,
                                              seed=settings.seed)
            curves["hessian_blocks"].append([step, norms])
            curves["hessian_block_seconds"] += time.perf_counter() - clock
        loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            grad_norm = float(flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]).norm())
            distance = float((flat([p.detach() for p in parameters]) - start).norm())
        value = loss.item()
        curves["loss"].append(value)
        curves["grad_norm"].append(grad_norm)
        curves["distance"].append(distance)
        if not math.isfinite(value):
            curves["diverged_at"] = step
            break
        if step == settings.steps:
            break  # the last row is the final state; no update after it
        optimizer.step()
        if callback is not None and (step + 1) % max(1, settings.steps // 50) == 0:
            callback({"width": width, "step": step + 1, "loss": value})
    curves["seconds"] = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        curves["final_loss"] = curves["loss"][-1]
        curves["train_relative_l2"] = float(relative_l2(model.values(theta), target).mean())
        test_theta = torch.as_tensor(test.params, dtype=torch.float32)
        test_target = torch.as_tensor(test.targets, dtype=torch.float32)
        curves["test_relative_l2"] = float(relative_l2(model.values(test_theta), test_target).mean())
    return curves


def _monotone_non_increasing(values: list[float]) -> bool:
    return all(b <= a for a, b in itertools.pairwise(values))


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Read the claim off the curves of one model x problem (widths in increasing order)."""
    results = sorted(results, key=lambda r: r["width"])
    widths = [r["width"] for r in results]
    final = [r["final_loss"] for r in results]
    finite = [f for f in final if math.isfinite(f)]
    threshold = max(finite) if finite else float("nan")
    steps_to = []
    for r in results:
        hit = next((t for t, value in enumerate(r["loss"]) if value <= threshold), None)
        steps_to.append(hit)
    reached = [s if s is not None else math.inf for s in steps_to]
    lower = _monotone_non_increasing(final)
    faster = _monotone_non_increasing(reached)
    rank = float(np.corrcoef(np.argsort(np.argsort(widths)), np.argsort(np.argsort(final)))[0, 1]) \
        if len(widths) > 1 else float("nan")
    hessian = [r["hessian"][-1][1] if r["hessian"] else float("nan") for r in results]
    blocks = {}
    if all(r.get("hessian_blocks") for r in results):
        blocks = {"names": results[0]["hessian_block_names"],
                  "initial": {k: [r["hessian_blocks"][0][1][k] for r in results] for k in ("a", "b", "ab")},
                  "final": {k: [r["hessian_blocks"][-1][1][k] for r in results] for k in ("a", "b", "ab")},
                  "seconds": [r["hessian_block_seconds"] for r in results]}
    if lower and faster:
        claim = "holds"
    elif lower or faster or rank < 0:
        claim = "partly holds"
    else:
        claim = "does not hold"
    losses = ", ".join(f"{w}: {f:.3g}" for w, f in zip(widths, final))
    steps_text = ", ".join(f"{w}: {'-' if s is None else s}" for w, s in zip(widths, steps_to))
    text = (f"claim {claim}. Final training loss by width ({losses}) is "
            f"{'monotone non-increasing' if lower else 'not monotone'} in width; iterations to reach "
            f"{threshold:.3g} (the worst final loss) ({steps_text}) are "
            f"{'monotone non-increasing' if faster else 'not monotone'}; Spearman correlation "
            f"width vs final loss {rank:+.2f}.")
    return {"claim": claim, "final_loss_monotone": lower, "faster_monotone": faster, "threshold": threshold,
            "steps_to_threshold": steps_to, "spearman_width_final_loss": rank, "widths": widths,
            "final_loss": final, "final_hessian_norm": hessian, "hessian_blocks": blocks,
            "relative_distance": [r["distance"][-1] / max(r["initial_norm"], 1e-30) for r in results],
            "test_relative_l2": [r["test_relative_l2"] for r in results], "text": text}


def run_width_study(settings_list: list[StudySettings], out: str | Path,
                    callback: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every model x problem in `settings_list` into `out`; returns the summary (also written)."""
    from ..models.base import atomic_write_bytes
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for settings in settings_list:
        settings.validate()
    pairs = []
    for settings in settings_list:
        if callback is not None:
            callback({"event": "data", "model": settings.model, "problem": settings.problem})
        train, test = study_data(settings, out / "data")
        results = []
        for width in settings.widths:
            if callback is not None:
                callback({"event": "width", "model": settings.model, "problem": settings.problem, "width": width,
                          "steps": settings.steps})
            results.append(train_width(settings, width, train, test, callback))
        pairs.append({"settings": asdict(settings), "results": results, "verdict": verdict(results)})
    curves = {"description": __doc__.strip().splitlines()[0], "loss": "MSE / mean(target^2) on the training set",
              "pairs": pairs}
    import json

    atomic_write_bytes(out / "curves.json", json.dumps(curves).encode())
    atomic_write_bytes(out / "curves.csv", plots.curves_csv(pairs).encode())
    figures = plots.draw(pairs, out / "plots")
    summary = {"pairs": [{"model": p["settings"]["model"], "problem": p["settings"]["problem"],
                          "settings": p["settings"], "verdict": p["verdict"],
                          "seconds": {str(r["width"]): r["seconds"] for r in p["results"]},
                          "parameters": {str(r["width"]): r["parameters"] for r in p["results"]}} for p in pairs],
               "plots": [str(f) for f in figures], "curves": str(out / "curves.json"),
               "machine": _machine()}
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def _machine() -> dict[str, Any]:
    import os
    import platform

    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def _need(ok: bool, field: str, value: Any, domain: str) -> None:
    if not ok:
        raise InputError(field, value, domain)
