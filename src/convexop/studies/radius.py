"""Neighbourhood radius against width (the width study's first added experiment, arXiv 2502.00705).

The paper's guarantees hold in a Euclidean ball of radius rho in parameter space, and its takeaway is
that the ball may grow with width. Measured here, per width and seed:
1. train as the width study does (same data, init seed, full-batch Adam, constant lr, `steps`
   iterations) to theta*, with loss L* = L(theta*) (MSE / mean(target^2) on the training set);
2. for a fixed random direction u (xi ~ N(0, I_p) over all p trainable parameters, u = xi / ||xi||,
   seeded by seed and draw) the perturbed point is theta* + rho u: an ABSOLUTE Euclidean distance
   rho from theta* (not per tensor, not relative to the weights' size), the ball of the theory;
3. from there, `probe_steps` more Adam steps with the same settings, continuing from the optimiser
   state at theta* (moments kept: the same optimiser, not a restarted one), give L_K(rho);
4. rho "recovers" iff L_K(rho) is finite and L_K(rho) <= (1 + margin) L*: K steps bring the loss
   back within the margin of the trained loss. Whenever the perturbation mattered at all
   (L(theta* + rho u) > (1 + margin) L*), recovering implies that the loss decreased below its
   perturbed start;
5. the radius is the largest recovering rho, by bisection in log(rho) on [rho_min, rho_max]
   (censored "below" if rho_min already fails, "above" if rho_max still recovers); over `draws`
   directions, the geometric mean.
Then log rho = c + b log width by least squares over the widths (geometric mean over seeds; censored
values left out) with R^2, tested against b = 1/2 (rho ~ sqrt(width)); also against the parameter count.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..families.operator_learning import DATA_SEED, OPERATOR_PROBLEMS
from .width import MODELS, StudySettings, build_for_width, flat, preset, study_data

DEFINITIONS = {
    "rho": "absolute Euclidean distance in parameter space: theta = theta* + rho * xi / ||xi||, "
           "xi ~ N(0, I) over all trainable parameters (one fixed direction per seed and draw)",
    "recovers": "L_K <= (1 + margin) * L*, L_K = training loss after probe_steps Adam steps from the perturbed "
                "point (optimiser state of theta* kept), L* = training loss at the trained point theta*",
    "radius": "largest recovering rho by bisection in log(rho) on [rho_min, rho_max]; geometric mean over draws",
    "fit": "least squares log(rho) = c + b log(width) over widths (geometric mean over seeds, censored left out)",
}


@dataclass
class RadiusSettings:
    model: str
    problem: str
    widths: list[int]
    steps: int
    n_train: int
    seeds: list[int] = field(default_factory=lambda: [0])
    lr: float = 1e-3
    probe_steps: int = 20
    margin: float = 0.1
    rho_min: float = 1e-3
    rho_max: float = 1e4
    bisections: int = 10
    draws: int = 1
    data_seed: int = DATA_SEED
    family_config: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        need(self.model in MODELS, "--model", self.model, "one of " + ", ".join(MODELS))
        need(self.problem in OPERATOR_PROBLEMS, "--problem", self.problem, "one of " + ", ".join(OPERATOR_PROBLEMS))
        need(len(self.widths) >= 1 and all(isinstance(w, int) and 1 <= w <= 4096 for w in self.widths),
             "--widths", self.widths, "comma-separated integers in [1, 4096]")
        need(len(self.seeds) >= 1 and all(isinstance(s, int) and 0 <= s < 2**31 for s in self.seeds),
             "--seeds", self.seeds, "comma-separated integers in [0, 2^31)")
        need(self.steps >= 0, "--steps", self.steps, "integers >= 0")
        need(self.n_train >= 1, "--n-train", self.n_train, "integers >= 1")
        need(0 < self.lr < 10, "--lr", self.lr, "(0, 10)")
        need(1 <= self.probe_steps <= 100_000, "--probe-steps", self.probe_steps, "integers in [1, 100000]")
        need(0 <= self.margin <= 1e6, "--margin", self.margin, "[0, 1e6]")
        need(0 < self.rho_min < math.inf, "--rho-min", self.rho_min, "(0, inf)")
        need(self.rho_min < self.rho_max < math.inf, "--rho-max", self.rho_max, f"({self.rho_min:g}, inf)")
        need(0 <= self.bisections <= 60, "--bisections", self.bisections, "integers in [0, 60]")
        need(1 <= self.draws <= 100, "--draws", self.draws, "integers in [1, 100]")

    def study(self, seed: int) -> StudySettings:
        """The width study's settings of one seed (data, model and optimiser are shared)."""
        return StudySettings(model=self.model, problem=self.problem, widths=list(self.widths), steps=max(1, self.steps),
                             lr=self.lr, n_train=self.n_train, n_test=1, seed=seed, data_seed=self.data_seed,
                             hessian_iterations=0, family_config=dict(self.family_config),
                             model_kwargs=dict(self.model_kwargs))


def radius_preset(model: str, problem: str) -> RadiusSettings:
    """The width study's quick preset (widths, steps, data size, model) for one model x problem."""
    base = preset(model, problem, quick=True)
    return RadiusSettings(model=model, problem=problem, widths=list(base.widths), steps=base.steps,
                          n_train=base.n_train, family_config=dict(base.family_config),
                          model_kwargs=dict(base.model_kwargs))


def bisect_threshold(criterion: Callable[[float], bool], low: float, high: float, iterations: int,
                     geometric: bool = True) -> dict[str, Any]:
    """Largest x in [low, high] with criterion(x) true, for a criterion true below and false above a threshold.
    Returns threshold (the largest x found true), bracket [true, false], censored (None, 'below': false at
    low, 'above': true at high) and the evaluations [(x, value)]."""
    evaluations: list[tuple[float, bool]] = []

    def test(x: float) -> bool:
        value = bool(criterion(x))
        evaluations.append((x, value))
        return value

    if not test(low):
        return {"threshold": low, "bracket": [None, low], "censored": "below", "evaluations": evaluations}
    if test(high):
        return {"threshold": high, "bracket": [high, None], "censored": "above", "evaluations": evaluations}
    for _ in range(iterations):
        middle = math.sqrt(low * high) if geometric else 0.5 * (low + high)
        if test(middle):
            low = middle
        else:
            high = middle
    return {"threshold": low, "bracket": [low, high], "censored": None, "evaluations": evaluations}


def fit_power_law(x: list[float], y: list[float], hypothesis: float = 0.5) -> dict[str, Any]:
    """log y = c + b log x by least squares: exponent b, its standard error, R^2, and whether b is within
    two standard errors of `hypothesis` (None with fewer than 3 points)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    n = len(lx)
    if n < 2 or np.ptp(lx) == 0:
        return {"exponent": None, "intercept": None, "r2": None, "stderr": None, "n": n, "hypothesis": hypothesis,
                "consistent": None}
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (intercept + slope * lx)
    total = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 1.0
    stderr = math.sqrt(float((residual ** 2).sum()) / (n - 2) / float(((lx - lx.mean()) ** 2).sum())) \
        if n > 2 else None
    consistent = None if stderr is None else bool(abs(slope - hypothesis) <= 2 * stderr)
    return {"exponent": float(slope), "intercept": float(intercept), "r2": r2, "stderr": stderr, "n": n,
            "hypothesis": hypothesis, "consistent": consistent}


def _direction(parameters: list[torch.Tensor], seed: int, draw: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1_000_003 * seed + draw + 17)
    xi = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in parameters]
    norm = math.sqrt(sum(float(t.pow(2).sum()) for t in xi))
    return [(t / norm).to(p) for t, p in zip(xi, parameters)]


def radius_for_width(settings: RadiusSettings, width: int, seed: int, train,
                     callback: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one width from one seed, then bisect the recovering radius along `draws` directions."""
    started = time.perf_counter()
    study = settings.study(seed)
    _, parameters, loss_fn = build_for_width(study, width, train)
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)

    def adam(steps: int) -> float:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn()
            if not math.isfinite(loss.item()):
                return math.inf
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            value = loss_fn().item()
        return value if math.isfinite(value) else math.inf

    trained_loss = adam(settings.steps)
    base = [p.detach().clone() for p in parameters]
    state = copy.deepcopy(optimizer.state_dict())
    limit = (1.0 + settings.margin) * trained_loss

    def criterion(direction: list[torch.Tensor], probes: dict[float, tuple[float, float]]) -> Callable[[float], bool]:
        def recovers(rho: float) -> bool:
            with torch.no_grad():
                for p, b, d in zip(parameters, base, direction):
                    p.copy_(b + rho * d)
                start = loss_fn().item()
            optimizer.load_state_dict(copy.deepcopy(state))
            after = adam(settings.probe_steps)
            probes[rho] = (start, after)
            if callback is not None:
                callback({"event": "probe", "width": width, "seed": seed, "rho": rho, "start": start, "after": after})
            return math.isfinite(after) and after <= limit
        return recovers

    draws = []
    for draw in range(settings.draws):
        probes: dict[float, tuple[float, float]] = {}
        found = bisect_threshold(criterion(_direction(parameters, seed, draw), probes), settings.rho_min,
                                 settings.rho_max, settings.bisections)
        rho = found["threshold"]
        draws.append({"draw": draw, "rho": rho, "bracket": found["bracket"], "censored": found["censored"],
                      "start_loss_at_rho": probes[rho][0], "loss_after_at_rho": probes[rho][1],
                      "probes": [[x, probes[x][0], probes[x][1], ok] for x, ok in found["evaluations"]]})
    with torch.no_grad():
        norm = float(flat(base).norm())
    rho = math.exp(sum(math.log(d["rho"]) for d in draws) / len(draws))
    censored = sorted({d["censored"] for d in draws if d["censored"]})
    return {"width": width, "seed": seed, "parameters": sum(p.numel() for p in parameters),
            "trained_loss": trained_loss, "parameter_norm": norm, "rho": rho, "relative_rho": rho / max(norm, 1e-30),
            "censored": ",".join(censored) or None, "draws": draws, "seconds": time.perf_counter() - started}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per width: geometric mean of rho over seeds; the power-law fits against width and parameter count."""
    widths = sorted({r["width"] for r in rows})
    table = []
    for width in widths:
        chosen = [r for r in rows if r["width"] == width]
        table.append({"width": width, "parameters": chosen[0]["parameters"],
                      "rho": math.exp(sum(math.log(r["rho"]) for r in chosen) / len(chosen)),
                      "rho_by_seed": {str(r["seed"]): r["rho"] for r in chosen},
                      "trained_loss": math.exp(sum(math.log(max(r["trained_loss"], 1e-300)) for r in chosen)
                                               / len(chosen)),
                      "relative_rho": sum(r["relative_rho"] for r in chosen) / len(chosen),
                      "censored": any(r["censored"] for r in chosen)})
    used = [t for t in table if not t["censored"]]
    fit = fit_power_law([t["width"] for t in used], [t["rho"] for t in used], 0.5)
    fit_parameters = fit_power_law([t["parameters"] for t in used], [t["rho"] for t in used], 0.5)
    if fit["exponent"] is None:
        text = f"no fit: {len(used)} uncensored width(s)"
    else:
        against = "not tested (fewer than 3 widths)" if fit["consistent"] is None else \
            ("consistent with" if fit["consistent"] else "not consistent with")
        error = "" if fit["stderr"] is None else f" +- {fit['stderr']:.2f}"
        text = (f"rho ~ width^{fit['exponent']:.2f}{error} (R^2 {fit['r2']:.3f}, {fit['n']} widths): {against} "
                f"rho ~ sqrt(width) (within 2 standard errors of 0.5); against the parameter count: "
                f"exponent {fit_parameters['exponent']:.2f} (R^2 {fit_parameters['r2']:.3f})")
    return {"table": table, "fit_width": fit, "fit_parameters": fit_parameters, "text": text}


def run_radius_study(settings: RadiusSettings, out: str | Path,
                     callback: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every width x seed into out/radius.json (+ out/plots/radius_vs_width.png); returns what it wrote."""
    import json

    from ..models.base import atomic_write_bytes
    from . import plots
    from .width import _machine

    settings.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if callback is not None:
        callback({"event": "data", "model": settings.model, "problem": settings.problem})
    train, _ = study_data(settings.study(settings.seeds[0]), out / "data")
    rows = []
    for width in settings.widths:
        for seed in settings.seeds:
            if callback is not None:
                callback({"event": "width", "width": width, "seed": seed})
            rows.append(radius_for_width(settings, width, seed, train, callback))
            if callback is not None:
                callback({"event": "done", **{k: v for k, v in rows[-1].items() if k != "draws"}})
    result = {"description": __doc__.strip().splitlines()[0], "definitions": DEFINITIONS,
              "settings": asdict(settings), "rows": rows, **summarise(rows), "machine": _machine()}
    figure = plots.radius_figure(result, out / "plots" / "radius_vs_width.png")
    result["plots"] = [str(figure)]
    atomic_write_bytes(out / "radius.json", json.dumps(result, indent=2).encode())
    return result


def need(ok: bool, field_name: str, value: Any, domain: str) -> None:
    if not ok:
        raise InputError(field_name, value, domain)
