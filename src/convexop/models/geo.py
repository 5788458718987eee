"""The generative equilibrium operator (GEO) of Kratsios, Neufeld and Schmocker (arXiv 2508.14995).

Unrolled form (the authors'): depth L untied layers, each a learned, relaxed forward-backward step

    x_0 ~ N(0, s^2 I_R)                                     (redrawn every call, shared by the batch)
    q_l = [ g_theta(x_{l-1} + c_{l,m}) ]_{m=1..M}            (the instance queried at M learned points)
    x_l = gamma x_{l-1} + (1 - gamma) P prox_f E( A_l x_{l-1} + B_l q_l + b_l )
    out = P prox_f E( A_{L+1} x_L )

with the family's P prox_f E as the activation. Parameters: L R (R + 2M + 1) + R^2.
Equilibrium form (mode "equilibrium"): one weight-tied layer T iterated to its fixed point
x* = T(x*) (Anderson or Picard; `depth` iterations at most while training, `inference_iterations`
at inference), gradients by implicit differentiation, a phantom k-step gradient or unrolling.
Parameters: R (R + 2M + 1) + R^2.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..families import Family
from ..solvers.fixed_point import BACKWARDS, SOLVERS, SolveStats, equilibrium_output
from .base import OperatorModel

INITIALISATIONS = ("authors", "scaled", "forward-backward")
QUERIES = ("absolute", "relative")
STARTS = ("random", "zero")
MODES = ("unrolled", "equilibrium")


class GEO(OperatorModel, name="geo"):
    """GEO with untied layers (mode "unrolled").

    init: "authors" (every weight N(0, init_std^2), as in their code), "scaled" (variance-preserving
    A ~ N(0, 1/R), unit-scale query offsets, B ~ N(0, init_std^2 / M)) or "forward-backward"
    (each layer starts as relaxed forward-backward splitting with a central-difference gradient:
    A = I, c = +-h e_j, B = -+step/(2h), read-out I).
    queries: "absolute" (the paper's q_m = g(x + c_m)) or "relative" (q_m = g(x + c_m) - g(x), one more
    evaluation per layer): B then multiplies differences of size ~h |grad g| instead of the common
    value g(x), so a training step that moves B does not break the +-h cancellation of the
    central differences (with absolute queries a program whose g is ~20 at the answer diverges at
    Adam's default rates).
    """

    has_coefficients = True

    def __init__(self, family: Family, depth: int = 10, width: int = 20, gamma: float = 0.5,
                 init: str = "authors", init_std: float = 0.01, start_std: float = 0.01,
                 mode: str = "unrolled", step: float | None = None, solver: str = "anderson",
                 backward: str = "phantom", inference_iterations: int = 100, tol: float = 1e-5,
                 contraction: float = 0.0, jacobian_penalty: float = 0.0, phantom_steps: int = 5,
                 queries: str = "absolute") -> None:
        _check(isinstance(depth, int) and 1 <= depth <= 1000, "depth", depth, "integers in [1, 1000]")
        _check(isinstance(width, int) and 1 <= width <= 10000, "width", width, "integers in [1, 10000]")
        _check(0.0 <= gamma < 1.0, "gamma", gamma, "[0, 1)")
        _check(init in INITIALISATIONS, "init", init, "one of " + ", ".join(INITIALISATIONS))
        _check(init_std > 0 and math.isfinite(init_std), "init_std", init_std, "(0, inf)")
        _check(start_std >= 0 and math.isfinite(start_std), "start_std", start_std, "[0, inf)")
        _check(mode in MODES, "mode", mode, "one of " + ", ".join(MODES))
        _check(solver in SOLVERS, "solver", solver, "one of " + ", ".join(SOLVERS))
        _check(backward in BACKWARDS, "backward", backward, "one of " + ", ".join(BACKWARDS))
        _check(isinstance(inference_iterations, int) and inference_iterations >= 1,
               "inference_iterations", inference_iterations, "integers >= 1")
        _check(0 < tol < 1, "tol", tol, "(0, 1)")
        _check(0 <= contraction < 1, "contraction", contraction, "[0, 1) (0 switches it off)")
        _check(jacobian_penalty >= 0, "jacobian_penalty", jacobian_penalty, "[0, inf)")
        _check(isinstance(phantom_steps, int) and phantom_steps >= 1, "phantom_steps", phantom_steps, "integers >= 1")
        _check(queries in QUERIES, "queries", queries, "one of " + ", ".join(QUERIES))
        super().__init__(family, depth=depth, width=width, gamma=gamma, init=init, init_std=init_std,
                         start_std=start_std, mode=mode, step=step, solver=solver, backward=backward,
                         inference_iterations=inference_iterations, tol=tol, contraction=contraction,
                         jacobian_penalty=jacobian_penalty, phantom_steps=phantom_steps, queries=queries)
        rank = family.rank
        self.depth, self.width, self.gamma, self.start_std = depth, width, gamma, start_std
        self.mode, self.solver, self.backward = mode, solver, backward
        self.inference_iterations, self.tol = inference_iterations, tol
        self.contraction, self.jacobian_penalty = contraction, jacobian_penalty
        self.phantom_steps = phantom_steps
        self.relative_queries = queries == "relative"
        layers = 1 if mode == "equilibrium" else depth
        self.A = torch.nn.Parameter(torch.empty(layers, rank, rank))
        self.B = torch.nn.Parameter(torch.empty(layers, rank, width))
        self.offsets = torch.nn.Parameter(torch.empty(layers, width, rank))
        self.bias = torch.nn.Parameter(torch.empty(layers, rank))
        self.readout = torch.nn.Parameter(torch.empty(rank, rank))
        self.start = "random"
        self.draws = 1
        self.last_stats: SolveStats | None = None
        self.auxiliary_loss: torch.Tensor | None = None
        self._initialise(init, init_std, step if step is not None else family.step_hint)

    @torch.no_grad()
    def _initialise(self, init: str, std: float, step: float) -> None:
        rank, width = self.family.rank, self.width
        if init == "authors":
            for p in (self.A, self.B, self.offsets, self.bias, self.readout):
                p.normal_(0.0, std)
        elif init == "scaled":
            self.A.normal_(0.0, 1.0 / math.sqrt(rank))
            self.B.normal_(0.0, std / math.sqrt(width))
            self.offsets.normal_(0.0, 1.0)
            self.bias.zero_()
            self.readout.normal_(0.0, 1.0 / math.sqrt(rank))
        else:  # forward-backward
            _check(width >= 2 * rank, "width", width, f">= 2 * rank = {2 * rank} for init forward-backward")
            h = 1e-2
            self.A.copy_(torch.eye(rank).expand_as(self.A))
            self.offsets.normal_(0.0, std)
            self.B.normal_(0.0, std)
            for j in range(rank):
                self.offsets[:, 2 * j].zero_()
                self.offsets[:, 2 * j + 1].zero_()
                self.offsets[:, 2 * j, j] = h
                self.offsets[:, 2 * j + 1, j] = -h
                self.B[:, :, 2 * j].zero_()
                self.B[:, :, 2 * j + 1].zero_()
                self.B[:, j, 2 * j] = -step / (2 * h)
                self.B[:, j, 2 * j + 1] = step / (2 * h)
            self.bias.zero_()
            self.readout.copy_(torch.eye(rank))

    def initial_state(self, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(1, R) start: a fresh N(0, s^2) draw (shared by the batch, as the authors'), or zero."""
        if self.start == "zero" or self.start_std == 0:
            return torch.zeros(1, self.family.rank, dtype=dtype, device=device)
        return self.start_std * torch.randn(1, self.family.rank, dtype=dtype, device=device)

    def matrix(self, index: int, a: torch.Tensor | None = None) -> torch.Tensor:
        """A_l (or the given a = A_l), rescaled to spectral norm <= contraction when that safeguard is on."""
        a = self.A[index] if a is None else a
        if self.contraction > 0:
            norm = torch.linalg.matrix_norm(a, ord=2)
            a = a * torch.clamp(self.contraction / norm.clamp_min(1e-12), max=1.0)
        return a

    def layer(self, index: int, x: torch.Tensor, theta: torch.Tensor,
              weights: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """One relaxed learned forward-backward step. x: (batch, R) -> (batch, R). weights: layer
        `index`'s (A, B, offsets, bias) when the caller unbound them once (see `coefficients`)."""
        a, b, offsets, bias = weights if weights is not None else (
            self.A[index], self.B[index], self.offsets[index], self.bias[index])
        q = self.family.queries(x, offsets, theta)  # g_theta(x + c_m): (batch, M)
        if self.relative_queries:  # g(x + c_m) - g(x): B then weighs differences, not the common value
            q = q - self.family.g(x, theta)[:, None]
        z = x @ self.matrix(index, a).T + q @ b.T + bias
        return self.gamma * x + (1.0 - self.gamma) * self.family.activation(z)

    def fixed_point(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Equilibrium mode: x* = T(x*) from the start x, statistics in `last_stats`."""
        budget = self.depth if self.training else self.inference_iterations
        x, self.last_stats = equilibrium_output(lambda z: self.layer(0, z, theta), x.contiguous(),
                                                solver=self.solver, max_iter=budget, abs_tol=self.tol,
                                                rel_tol=self.tol, backward=self.backward,
                                                phantom_steps=self.phantom_steps)
        if self.training and self.jacobian_penalty > 0 and torch.is_grad_enabled():
            anchor = x.detach().requires_grad_(True)
            probe = torch.randn_like(anchor)
            vjp = torch.autograd.grad(self.layer(0, anchor, theta), anchor, probe, create_graph=True)[0]
            self.auxiliary_loss = self.jacobian_penalty * vjp.pow(2).sum(-1).mean()
        return x

    def coefficients(self, theta: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """theta: (batch, P) -> (batch, R). `self.draws` > 1 averages over random starts."""
        outputs = []
        for _ in range(self.draws if start is None else 1):
            x = start if start is not None else self.initial_state(theta.shape[0], self.A.dtype, self.A.device)
            x = x.expand(theta.shape[0], -1)
            if self.mode == "equilibrium":
                x = self.fixed_point(x, theta)
            else:  # unbound once: indexing A[l] per layer makes backward write a full-size gradient each time
                layers = list(zip(*(p.unbind(0) for p in (self.A, self.B, self.offsets, self.bias))))
                for index in range(self.depth):
                    x = self.layer(index, x, theta, layers[index])
            outputs.append(self.family.activation(x @ self.readout.T))
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        return self.family.decode(self.coefficients(theta))

    def set_inference(self, start: str = "random", draws: int = 1) -> None:
        """Inference switches: start "random" (the authors') or "zero" (deterministic); draws to average."""
        _check(start in STARTS, "start", start, "one of " + ", ".join(STARTS))
        _check(isinstance(draws, int) and draws >= 1, "draws", draws, "integers >= 1")
        self.start, self.draws = start, draws


def _check(ok: bool, field: str, value: object, domain: str) -> None:
    if not ok:
        raise InputError(field, value, domain)
