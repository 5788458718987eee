"""`toy-box`: the authors' min_op toy, a box-constrained smooth convex program in R^2.

g(x) = 1/2 x'Ax + b'x + c + log(sum_i exp(beta_i x_i) + kappa),  f = indicator of [-1, 1]^2.
Training law (the authors'): A = G'G with G_ij ~ N(0,1), b ~ N(0, I), c ~ N(0,1), beta = 0,
kappa = 1. The paper's out-of-distribution law ("ood"): A = 0, b = 0, c = 0, kappa ~ Exp(1) and
beta_i = -Exp(1) for the first half (minimiser (1, 1)), +Exp(1) for the second (minimiser (-1,-1)).
Reference: the true box minimiser (the in-basis optimum: active-set Newton to 1e-10), not the authors'
clip(-A^-1 b, -1, 1), which differs whenever A is not diagonal and the box is active.
"""

from __future__ import annotations

import numpy as np
import torch

from ..basis import Basis
from ..errors import InputError
from ..prox import Box
from .base import Family
from .parameters import Parameter


class ToyBox(Family):
    name = "toy-box"
    exact = True
    newton_polish = True  # polish by active-set Newton (solvers/newton.py)
    has_hessian = True
    laws = ("train", "ood")
    parameters = (
        Parameter("A", shape=(2, 2), law="G'G, G_ij ~ N(0,1)", description="symmetric PSD matrix"),
        Parameter("b", shape=(2,), law="N(0, I)"),
        Parameter("c", law="N(0, 1)"),
        Parameter("beta", shape=(2,), law="0 (ood: -+Exp(1))"),
        Parameter("kappa", low=0.0, low_open=True, law="1 (ood: Exp(1))"),
    )
    reference_method = "box minimiser: active-set Newton (then FISTA), prox-gradient residual <= 1e-10"

    def __init__(self) -> None:
        basis = Basis(["x_1", "x_2"], np.eye(2), np.ones(2), np.arange(2.0))
        super().__init__(basis)
        self.f = Box(-1.0, 1.0)

    def validate_instance(self, instance, where):
        theta = super().validate_instance(instance, where)
        matrix = theta[:4].reshape(2, 2)
        if not np.allclose(matrix, matrix.T, atol=1e-12) or np.linalg.eigvalsh(matrix).min() < -1e-12:
            raise InputError(f"{where}.A", instance["A"], "symmetric positive semidefinite 2x2 matrices")
        return theta

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        if law == "train":
            g = rng.standard_normal((n, 2, 2))
            a = np.einsum("nki,nkj->nij", g, g).reshape(n, 4)
            b = rng.standard_normal((n, 2))
            c = rng.standard_normal((n, 1))
            return np.concatenate([a, b, c, np.zeros((n, 2)), np.ones((n, 1))], axis=1)
        if law == "ood":
            beta = rng.exponential(1.0, (n, 2))
            beta[: n // 2] *= -1
            kappa = rng.exponential(1.0, (n, 1))
            return np.concatenate([np.zeros((n, 7)), beta, kappa], axis=1)
        raise InputError("law", law, "one of " + ", ".join(self.laws))

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        p = self.split_theta(theta.to(x.dtype))
        squeeze = x.dim() == 2
        if squeeze:
            x = x[:, None, :]
        quadratic = 0.5 * torch.einsum("bmi,bij,bmj->bm", x, p["A"], x)
        linear = torch.einsum("bmi,bi->bm", x, p["b"]) + p["c"][:, None]
        exponents = torch.cat([x * p["beta"][:, None, :],
                               torch.log(p["kappa"])[:, None, None].expand(-1, x.shape[1], 1)], dim=-1)
        value = quadratic + linear + torch.logsumexp(exponents, dim=-1)
        return value[:, 0] if squeeze else value

    def hessian(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """(batch, 2, 2) A + diag(w beta^2) - (w beta)(w beta)', w the softmax weights of the log-sum-exp."""
        p = self.split_theta(theta.to(x.dtype))
        exponents = torch.cat([x * p["beta"], torch.log(p["kappa"])[:, None]], dim=-1)
        weighted = torch.softmax(exponents, dim=-1)[:, :2] * p["beta"]
        return p["A"] + torch.diag_embed(weighted * p["beta"]) - weighted[:, :, None] * weighted[:, None, :]

    def lipschitz(self, theta: torch.Tensor) -> torch.Tensor:
        """(batch,) bound on the Lipschitz constant of grad g: lambda_max(A) + max beta_i^2."""
        p = self.split_theta(theta)
        return torch.linalg.eigvalsh(p["A"])[:, -1].clamp_min(0) + (p["beta"] ** 2).max(dim=1).values + 1e-12

    def cvxpy_form(self):
        """1/2 ||G x||^2 + b'x + log(exp(beta_1 x_1) + exp(beta_2 x_2) + kappa), |x_i| <= 1, with
        G'G = A (the symmetric part, clipped to PSD) a parameter, so that the problem is DPP."""
        import cvxpy as cp

        x = cp.Variable(self.rank)
        g, b, beta, log_kappa = cp.Parameter((2, 2)), cp.Parameter(2), cp.Parameter(2), cp.Parameter(1)
        objective = 0.5 * cp.sum_squares(g @ x) + b @ x + cp.log_sum_exp(cp.hstack([cp.multiply(beta, x), log_kappa]))
        problem = cp.Problem(cp.Minimize(objective), [x >= -1, x <= 1])

        def set_parameters(theta_row: torch.Tensor) -> None:
            p = self.split_theta(theta_row[None])
            a = p["A"][0].numpy()
            w, v = np.linalg.eigh((a + a.T) / 2)
            g.value = (v * np.sqrt(np.clip(w, 0, None))).T
            b.value, beta.value = p["b"][0].numpy(), p["beta"][0].numpy()
            log_kappa.value = np.log(p["kappa"][0].numpy()).reshape(1)

        return problem, x, set_parameters

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        optimum = self.in_basis_optimum(theta)
        if progress is not None:
            progress(len(theta))
        return optimum

    def reference_error(self) -> float:
        return 1e-9

    def authors_target(self, theta: np.ndarray) -> np.ndarray:
        """The authors' label clip(-A^-1 b, -1, 1) (kept to measure how wrong it is)."""
        a = theta[:, :4].reshape(-1, 2, 2)
        b = theta[:, 4:6]
        return np.clip(-np.linalg.solve(a, b[..., None])[..., 0], -1, 1)

    @classmethod
    def default_training(cls):
        return {"model": {"depth": 20, "width": 20, "gamma": 0.5},
                "training": {"steps": 3000, "batch_size": 500, "lr": 3e-3, "n_instances": 5000}}
