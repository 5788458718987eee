"""A gradient-reading GEO: each layer reads the gradient of the instance loss g at a learned point,
preconditioned by a learned diagonal (plus an optional learned low-rank term), with learned momentum.

    x_0 = x_{-1} = 0
    y_l = x_l + beta_l * (x_l - x_{l-1})                                  (per coordinate)
    z_l = y_l - P_l grad g_theta(y_l + c_l) + bias_l,    P_l = diag(d_l) + U_l V_l'
    x_{l+1} = P prox_f E(z_l)                            (the family's activation)
    out = x_L

Untied layers l = 0..L-1. Parameters: L R (4 + 2 k) with k the low rank (`low_rank`), against the GEO's
L R (R + 2M + 1) + R^2: the GEO reads the gradient through M learned queries, this model reads it
exactly (`Family.gradient`: closed form where the family has one, autograd of g otherwise), so its
size does not grow with R^2 or with the width M.

Initialised as an exact known method: d_l = step (the family's `step_hint` unless given), c_l = 0,
bias_l = 0, U_l = 0 (V_l small random, so that U_l receives gradients), and beta_l the momentum of
FISTA (Beck and Teboulle: t_1 = 1, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2, beta = (t_k - 1) / t_{k+1}),
or zero (`momentum="none"`: projected gradient / forward-backward splitting). At initialisation the
model therefore is L steps of FISTA (or of forward-backward) from zero, and training refines it.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..families import Family
from .base import OperatorModel

MOMENTA = ("fista", "none")


def fista_momenta(depth: int) -> list[float]:
    """beta_l for l = 0..depth-1: layer l forms y_l = x_l + beta_l (x_l - x_{l-1}) as FISTA's
    y_{l+1} = x_l + (t_l - 1) / t_{l+1} (x_l - x_{l-1}) with t_1 = 1 (beta_0 = 0: the start has no past)."""
    betas, t = [0.0], 1.0
    for _ in range(1, depth):
        following = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        betas.append((t - 1.0) / following)
        t = following
    return betas


class GradientGEO(OperatorModel, name="geo-gradient"):
    """Unrolled preconditioned, accelerated forward-backward splitting with learned parameters.

    depth: layers L. momentum: "fista" (beta_l starts as FISTA's sequence) or "none" (starts at 0).
    step: the initial diagonal preconditioner d_l (default: the family's `step_hint`).
    low_rank: the rank k of the learned low-rank term U_l V_l' of the preconditioner (0: diagonal only).
    init_std: the scale of V_l's random start (U_l starts at 0, so the model starts as the method).
    """

    has_coefficients = True

    def __init__(self, family: Family, depth: int = 16, momentum: str = "fista", step: float | None = None,
                 low_rank: int = 0, init_std: float = 0.01) -> None:
        _check(isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= 1000, "depth", depth,
               "integers in [1, 1000]")
        _check(momentum in MOMENTA, "momentum", momentum, "one of " + ", ".join(MOMENTA))
        _check(step is None or (isinstance(step, (int, float)) and not isinstance(step, bool) and 0 < step
                                and math.isfinite(step)), "step", step, "(0, inf) or None (the family's step_hint)")
        _check(isinstance(low_rank, int) and not isinstance(low_rank, bool) and 0 <= low_rank <= family.rank,
               "low_rank", low_rank, f"integers in [0, {family.rank}] (the family's rank)")
        _check(isinstance(init_std, (int, float)) and not isinstance(init_std, bool) and 0 < init_std
               and math.isfinite(init_std), "init_std", init_std, "(0, inf)")
        super().__init__(family, depth=depth, momentum=momentum, step=step, low_rank=low_rank, init_std=init_std)
        size = family.rank
        self.depth, self.low_rank = depth, low_rank
        self.diagonal = torch.nn.Parameter(torch.empty(depth, size))
        self.offsets = torch.nn.Parameter(torch.empty(depth, size))
        self.bias = torch.nn.Parameter(torch.empty(depth, size))
        self.momenta = torch.nn.Parameter(torch.empty(depth, size))
        self.left = torch.nn.Parameter(torch.empty(depth, size, low_rank))
        self.right = torch.nn.Parameter(torch.empty(depth, size, low_rank))
        self._initialise(float(step) if step is not None else float(family.step_hint), momentum, init_std)

    @torch.no_grad()
    def _initialise(self, step: float, momentum: str, std: float) -> None:
        self.diagonal.fill_(step)
        self.offsets.zero_()
        self.bias.zero_()
        betas = fista_momenta(self.depth) if momentum == "fista" else [0.0] * self.depth
        self.momenta.copy_(torch.tensor(betas, dtype=self.momenta.dtype)[:, None].expand_as(self.momenta))
        self.left.zero_()
        self.right.normal_(0.0, std)

    def layer(self, index: int, x: torch.Tensor, previous: torch.Tensor, theta: torch.Tensor,
              weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One learned step: (x_l, x_{l-1}) (batch, R) -> x_{l+1} (batch, R). weights: layer `index`'s
        (diagonal, offsets, bias, momenta, left, right), unbound once by the caller."""
        diagonal, offsets, bias, momenta, left, right = weights
        y = x + momenta * (x - previous)
        gradient = self.family.gradient(y + offsets, theta)
        step = diagonal * gradient
        if self.low_rank:
            step = step + (gradient @ right) @ left.T
        return self.family.activation(y - step + bias)

    def coefficients(self, theta: torch.Tensor) -> torch.Tensor:
        """theta: (batch, P) -> (batch, R): L layers from the zero start."""
        parameters = (self.diagonal, self.offsets, self.bias, self.momenta, self.left, self.right)
        # unbound once: indexing a parameter per layer makes backward write a full-size gradient each time
        layers = list(zip(*(p.unbind(0) for p in parameters)))
        x = torch.zeros(theta.shape[0], self.family.rank, dtype=self.diagonal.dtype, device=self.diagonal.device)
        previous = x
        for index in range(self.depth):
            x, previous = self.layer(index, x, previous, theta, layers[index]), x
        return x

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        return self.family.decode(self.coefficients(theta))


def _check(ok: bool, field: str, value: object, domain: str) -> None:
    if not ok:
        raise InputError(field, value, domain)
