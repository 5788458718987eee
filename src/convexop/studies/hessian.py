"""Spectral norms of Hessian blocks (the width study's second experiment, arXiv 2502.00705).

The parameters are split into two named groups A and B (DeepONet: branch | trunk; FNO: the spectral
weights | the pointwise weights and biases; every other parameter - the DeepONet output bias, the
FNO lift and projection - belongs to neither). With H the Hessian of the loss over all parameters,
the three blocks are H_AA, H_BB (symmetric: norm = largest |eigenvalue|) and the cross block H_AB
(norm = largest singular value). Only Hessian-vector products are used (double back-propagation:
the gradient with respect to A and B is taken once with a graph, then differentiated against a
vector that is zero outside the block), never a dense Hessian:
- diagonal block: power iteration v <- (H v)_A / ||.|| with v supported on A;
- cross block: power iteration on H_AB^T H_AB, i.e. v_B -> u_A = (H v_B)_A -> (H u_A)_B, two
  products per iteration; the estimate is ||H_AB v_B|| with ||v_B|| = 1.
The random start is fixed by `seed`; `tol` > 0 stops early once the estimate changes by less than
tol (relative). A run costs `iterations` products per diagonal block and 2 x `iterations` for the
cross block, i.e. 4 x `iterations` Hessian-vector products (each ~2-3 gradients) in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

BLOCK_KEYS = ("a", "b", "ab")


def parameter_blocks(model: torch.nn.Module, model_name: str) -> dict[str, list[torch.nn.Parameter]]:
    """The two groups of the paper's block analysis, named, in a fixed order (A first)."""
    prefixes = {"deeponet": (("branch", ("branch.",)), ("trunk", ("trunk.",))),
                "fno": (("spectral", ("spectral.",)), ("pointwise", ("pointwise.",)))}
    if model_name not in prefixes:
        raise ValueError(f"no Hessian blocks defined for model {model_name!r}")
    groups: dict[str, list[torch.nn.Parameter]] = {}
    for name, starts in prefixes[model_name]:
        groups[name] = [p for key, p in model.named_parameters() if p.requires_grad and key.startswith(starts)]
        if not groups[name]:
            raise ValueError(f"model {model_name!r} has no {name} parameters")
    return groups


def _flat_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(t.pow(2).sum() for t in tensors))


def _random_unit(parameters: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    vector = [torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p) for p in parameters]
    norm = _flat_norm(vector)
    return [v / norm for v in vector]


class _Products:
    """Hessian-vector products of one loss restricted to the parameters of groups A and B."""

    def __init__(self, loss_fn: Callable[[], torch.Tensor], a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
        self.a, self.b = a, b
        self.parameters = a + b
        self.grads = torch.autograd.grad(loss_fn(), self.parameters, create_graph=True)

    def apply(self, on_a: list[torch.Tensor] | None, on_b: list[torch.Tensor] | None) -> tuple[list, list]:
        """H (v_A, v_B) with a missing part read as zero; returns the (A, B) parts of the product."""
        vector = (on_a if on_a is not None else [torch.zeros_like(p) for p in self.a]) + \
                 (on_b if on_b is not None else [torch.zeros_like(p) for p in self.b])
        product = torch.autograd.grad(self.grads, self.parameters, grad_outputs=vector, retain_graph=True,
                                      allow_unused=True)
        product = [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(product, self.parameters)]
        return product[:len(self.a)], product[len(self.a):]


def _power(step: Callable[[list[torch.Tensor]], tuple[list[torch.Tensor], float]], start: list[torch.Tensor],
           iterations: int, tol: float) -> float:
    """Iterate v <- step(v) (returns the next unit vector and the current estimate)."""
    vector, value = start, float("nan")
    for _ in range(iterations):
        vector, estimate = step(vector)
        converged = math.isfinite(value) and abs(estimate - value) <= tol * abs(estimate)
        value = estimate
        if vector is None or not math.isfinite(value) or converged:
            break
    return value


def block_spectral_norms(loss_fn: Callable[[], torch.Tensor], a: list[torch.Tensor], b: list[torch.Tensor],
                         iterations: int = 20, seed: int = 0, tol: float = 0.0) -> dict[str, float]:
    """{'a': ||H_AA||_2, 'b': ||H_BB||_2, 'ab': ||H_AB||_2} by power iteration on Hessian-vector products."""
    products = _Products(loss_fn, list(a), list(b))
    generator = torch.Generator().manual_seed(seed)

    def normalised(vector):
        norm = float(_flat_norm(vector))
        return (None if norm == 0.0 or not math.isfinite(norm) else [v / norm for v in vector]), norm

    def diagonal(side):
        def step(vector):
            parts = products.apply(vector, None) if side == 0 else products.apply(None, vector)
            return normalised(parts[side])
        return step

    def cross(vector_b):
        image_a = products.apply(None, vector_b)[0]  # H_AB v_B
        value = float(_flat_norm(image_a))
        back = products.apply(image_a, None)[1]  # H_BA H_AB v_B
        return normalised(back)[0], value

    result = {"a": _power(diagonal(0), _random_unit(products.a, generator), iterations, tol),
              "b": _power(diagonal(1), _random_unit(products.b, generator), iterations, tol),
              "ab": _power(cross, _random_unit(products.b, generator), iterations, tol)}
    return result


def model_block_norms(model: torch.nn.Module, model_name: str, loss_fn: Callable[[], torch.Tensor],
                      iterations: int = 20, seed: int = 0, tol: float = 0.0) -> dict[str, float]:
    """block_spectral_norms over `parameter_blocks(model, model_name)`."""
    groups = list(parameter_blocks(model, model_name).values())
    return block_spectral_norms(loss_fn, groups[0], groups[1], iterations=iterations, seed=seed, tol=tol)


def block_names(model_name: str) -> dict[str, str]:
    """'a', 'b', 'ab' -> readable names for tables and plots."""
    a, b = {"deeponet": ("branch", "trunk"), "fno": ("spectral", "pointwise")}[model_name]
    return {"a": f"{a}-{a}", "b": f"{b}-{b}", "ab": f"{a}-{b}"}
