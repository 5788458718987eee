"""`hedging`: the authors' experiment 3, quadratic hedging in a Heston market with a bounded capital.

Market (the later code version): dS = mu S dt + sqrt(v) S dW^1, dv = kappa (theta - v) dt +
sigma_v sqrt(v) dW^2, d<W^1, W^2> = rho dt; S0 = 10, v0 = 0.05, mu = 0.02, kappa = 4, theta = 0.05,
sigma_v = 0.3, rho = -0.7, T = 1. One fixed sample of N = 500 paths with n = 100 Euler steps
(full truncation), regenerated deterministically (numpy default_rng(sample_seed = 0)) in __init__.
Grid (a deliberate fix of the authors' quirk 2): t_k = k dt, dt = T / n, trading at t_0..t_{n-1},
S_n = S_T; the authors used linspace(0, 1, 100) with dt = 0.01, so their paths stop at 0.99.

Variable x = (x_0, x_abc) in R^11: price (initial capital) S0 x_0 with x_0 in [0, 10], and the number
of shares theta_t = sum x_abc t^a Y_t^b V_t^c, Y = log(S/S0), V = v^+/v0, a + b + c <= 2 (the authors'
multi-index order). f = indicator{0 <= x_0 <= 10}; its prox (and the GEO activation: the basis Gram
is block-diagonal, so P prox_f E is the same map) clips coordinate 0 only.
g_H(x) = E_N[(H - S0 x_0 - sum_k theta_{t_k} (S_{k+1} - S_k))^2] = mean_i (H_i - (A x)_i)^2 with the
fixed (N, 11) matrix A = [S0, gains of each basis function]. Stored as g = (x - x_u)' Q (x - x_u) + e,
Q = A'A / N, x_u = A^+ H the unconstrained least-squares hedge and e its mean squared residual, so
g and grad g = 2 Q (x - x_u) cost O(R^2) per query instead of a pass over the paths.

Instance parameters: payoff (call, put, gap_call, gap_put), strike K > 0, trigger K' > 0
(gap_call: H = (S_T - K) 1{S_T >= K'}, gap_put: H = (K - S_T) 1{S_T <= K'}; call and put are the
gap options with K' = K, so their trigger may be omitted and, if given, must equal the strike).
Training law (the authors'): alternately call with K ~ U(9, 10) and put with K ~ U(10, 11). Law
"ood" (the paper's test set): alternately gap_call with K ~ U(9, 10), K' ~ U(10, 11) and gap_put
with K ~ U(10, 11), K' ~ U(9, 10).

Points: row 0 is the capital, at (0, S0, v0), with value the price S0 x_0; rows 1.. are the N * n
path points (t_k, S_k, v_k^+), path-major, with value theta. Inner product (R + L2(dt x dP_N)):
weight 1 on the price, T / (N n) on each path point; `error` is the squared norm of the
difference in it (price error^2 + mean squared strategy error times T).

The family is exact: its target (`reference`) is the in-basis optimum of f + g (x_0 = clip of the
unconstrained optimum's x_0, the rest re-solved with x_0 fixed: exact for one boxed coordinate),
to round-off. The paper scores against the Heston price and minimal-variance hedge instead;
`heston_reference` computes those (references/heston.py) for evaluation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..basis import Basis, path_polynomial_basis
from ..errors import InputError
from ..prox import Box
from ..references import heston
from ..solvers.program import CompositeProgram
from .base import Family
from .parameters import Parameter

PAYOFFS = ("call", "put", "gap_call", "gap_put")
CAPITAL_BOUND = 10.0  # x_0 in [0, 10]
DEGREE = 2


def payoff_values(terminal: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """H on the sample: terminal (N,), theta (batch, 3) [payoff index, strike, trigger] -> (batch, N)."""
    kind = torch.round(theta[:, 0:1])
    strike, trigger = theta[:, 1:2], theta[:, 2:3]
    s = terminal[None, :]
    is_put = (kind == 1) | (kind == 3)
    call_like = (s - strike) * (s >= trigger).to(s.dtype)
    put_like = (strike - s) * (s <= trigger).to(s.dtype)
    return torch.where(is_put, put_like, call_like)


class Hedging(Family):
    name = "hedging"
    exact = True
    laws = ("train", "ood")
    parameters = (
        Parameter("payoff", choices=PAYOFFS, law="call / put alternately (ood: gap_call / gap_put)"),
        Parameter("strike", low=0.0, low_open=True, high_open=True,
                  law="call U(9, 10), put U(10, 11) (ood: gap_call U(9, 10), gap_put U(10, 11))"),
        Parameter("trigger", low=0.0, low_open=True, high_open=True,
                  law="= strike for call / put (may be omitted; required for gap payoffs) "
                      "(ood: gap_call U(10, 11), gap_put U(9, 10))",
                  description="required for gap payoffs; for call / put omit it or give the strike"),
    )
    newton_polish = True  # a box-constrained quadratic: one active-set Newton round from a good start
    has_hessian = True
    target_dtype = np.float32  # 500 instances x 50,001 values
    reference_method = ("in-basis optimum of the quadratic program on the fixed sample "
                        "(least squares with x_0 clipped to [0, 10], float64)")

    def __init__(self, n_paths: int = 500, n_steps: int = 100, sample_seed: int = 0,
                 s0: float = 10.0, v0: float = 0.05, mu: float = 0.02, kappa: float = 4.0,
                 long_run_variance: float = 0.05, sigma_v: float = 0.3, rho: float = -0.7,
                 maturity: float = 1.0) -> None:
        if not (isinstance(n_paths, int) and 20 <= n_paths <= 100_000):
            raise InputError("n_paths", n_paths, "integers in [20, 100000]")
        if not (isinstance(n_steps, int) and 1 <= n_steps <= 10_000):
            raise InputError("n_steps", n_steps, "integers in [1, 10000]")
        if not (isinstance(sample_seed, int) and sample_seed >= 0):
            raise InputError("sample_seed", sample_seed, "integers >= 0")
        market = heston.HestonModel(s0=s0, v0=v0, mu=mu, kappa=kappa, long_run_variance=long_run_variance,
                                    sigma_v=sigma_v, rho=rho, maturity=maturity)
        times, spot, variance = heston.simulate_euler(market, n_paths, n_steps, sample_seed)
        positive = np.maximum(variance, 0.0)
        paths = path_polynomial_basis(times[:-1], {"Y": np.log(spot[:, :-1] / s0), "V": positive[:, :-1] / v0},
                                      DEGREE)
        rank = paths.rank + 1
        values = np.zeros((1 + len(paths.values), rank))
        values[0, 0] = s0
        values[1:, 1:] = paths.values
        weights = np.concatenate([[1.0], np.full(len(paths.values), maturity / (n_paths * n_steps))])
        points = np.concatenate([[[0.0, s0, v0]],
                                 np.stack([np.broadcast_to(times[None, :-1], spot[:, :-1].shape).reshape(-1),
                                           spot[:, :-1].reshape(-1), positive[:, :-1].reshape(-1)], axis=1)])
        labels = ["x_0 (price / S0)"] + paths.labels
        super().__init__(Basis(labels, values, weights, points), n_paths=n_paths, n_steps=n_steps,
                         sample_seed=sample_seed, s0=s0, v0=v0, mu=mu, kappa=kappa,
                         long_run_variance=long_run_variance, sigma_v=sigma_v, rho=rho, maturity=maturity)
        self.market = market
        self.times, self.spot, self.variance = times, spot, positive
        # hedging matrix A (N, R): terminal wealth = A x
        gains = np.einsum("npr,np->nr", paths.values.reshape(n_paths, n_steps, -1), np.diff(spot, axis=1))
        self.wealth_matrix = np.concatenate([np.full((n_paths, 1), s0), gains], axis=1)
        self._qr = np.linalg.qr(self.wealth_matrix)
        hessian_half = self.wealth_matrix.T @ self.wealth_matrix / n_paths  # Q
        pseudo_inverse = np.linalg.pinv(self.wealth_matrix)  # (R, N)
        self.register_buffer("quadratic", torch.as_tensor(hessian_half), persistent=False)
        self.register_buffer("pseudo_inverse", torch.as_tensor(pseudo_inverse), persistent=False)
        self.register_buffer("wealth", torch.as_tensor(self.wealth_matrix), persistent=False)
        self.register_buffer("terminal", torch.as_tensor(spot[:, -1]), persistent=False)
        self.register_buffer("weights", torch.as_tensor(weights), persistent=False)
        self.lipschitz_bound = 2.0 * float(np.linalg.eigvalsh(hessian_half)[-1])
        self.step_hint = 1.0 / self.lipschitz_bound  # for GEO init "forward-backward"
        self.f = Box([0.0] + [-math.inf] * (rank - 1), [CAPITAL_BOUND] + [math.inf] * (rank - 1))

    # ----- instances ---------------------------------------------------------------------
    def validate_instance(self, instance: dict[str, Any], where: str) -> np.ndarray:
        payoff = instance.get("payoff")
        if payoff in ("call", "put") and "trigger" not in instance and "strike" in instance:
            instance = dict(instance, trigger=instance["strike"])
        if payoff in ("gap_call", "gap_put") and "trigger" not in instance:
            raise InputError(f"{where}.trigger", None, "",
                             f"missing; a {payoff} needs a trigger (finite numbers in (0, inf))")
        theta = super().validate_instance(instance, where)
        if payoff in ("call", "put") and theta[2] != theta[1]:
            raise InputError(f"{where}.trigger", instance["trigger"], "",
                             f"a {payoff} has no separate trigger; omit it or give the strike {theta[1]:g}")
        return theta

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        """(n, 3) [payoff index, strike, trigger]: even rows call-type, odd rows put-type."""
        if law not in self.laws:
            raise InputError("law", law, "one of " + ", ".join(self.laws))
        put = np.arange(n) % 2 == 1
        low = rng.uniform(9.0, 10.0, size=n)
        high = rng.uniform(10.0, 11.0, size=n)
        strike = np.where(put, high, low)
        if law == "train":
            kind, trigger = put.astype(float), strike
        else:
            kind, trigger = np.where(put, 3.0, 2.0), np.where(put, low, high)
        return np.stack([kind, strike, trigger], axis=1)

    # ----- the convex program ------------------------------------------------------------
    def payoff(self, theta: torch.Tensor) -> torch.Tensor:
        """H on the fixed sample: (batch, 3) -> (batch, N)."""
        return payoff_values(self.terminal.to(theta.dtype), theta)

    def unconstrained(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_u = A^+ H (batch, R) and e = mean (H - A x_u)^2 (batch,), in theta's dtype."""
        h = self.payoff(theta)
        x_u = h @ self.pseudo_inverse.to(h.dtype).T
        residual = ((h - x_u @ self.wealth.to(h.dtype).T) ** 2).mean(-1)
        return x_u, residual

    def g(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Mean squared hedging error. x: (batch, R) or (batch, M, R); theta: (batch, 3) -> (batch[, M])."""
        x_u, residual = self.unconstrained(theta.to(x.dtype))
        if x.dim() == 3:
            x_u, residual = x_u[:, None, :], residual[:, None]
        d = x - x_u
        return torch.einsum("...i,ij,...j->...", d, self.quadratic.to(x.dtype), d) + residual

    def in_basis_program(self, theta: torch.Tensor) -> CompositeProgram:
        """g with x_u and e computed once per instance, the box on x_0, 2 lambda_max(Q) and H = 2Q."""
        unconstrained, residual = self.unconstrained(theta)
        quadratic = self.quadratic.to(theta.dtype)

        def smooth(x: torch.Tensor) -> torch.Tensor:
            d = x - (unconstrained if x.dim() == 2 else unconstrained[:, None, :])
            return ((d @ quadratic) * d).sum(-1) + (residual if x.dim() == 2 else residual[:, None])

        return CompositeProgram(smooth, self.f, self.lipschitz(theta), hessian=lambda x: self.hessian(x, theta),
                                newton=True)

    def lipschitz(self, theta: torch.Tensor) -> torch.Tensor:
        """(batch,) 2 lambda_max(Q), the same for every instance."""
        return torch.full((len(theta),), self.lipschitz_bound, dtype=torch.float64, device=theta.device)

    def hessian(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """(batch, R, R) 2 Q."""
        return (2.0 * self.quadratic.to(x.dtype)).expand(len(x), -1, -1)

    def price(self, x: torch.Tensor) -> torch.Tensor:
        """S0 x_0: (..., R) -> (...)."""
        return self.market.s0 * x[..., 0]

    def extra_answers(self, x: torch.Tensor, theta: torch.Tensor) -> list[dict[str, Any]]:
        return [{"price": price} for price in self.price(x).tolist()]

    def cvxpy_form(self):
        """The in-basis QP in the compact form of `in_basis_program`: ||Q^(1/2) (x - x_u)||^2 with
        x_u = A^+ H a parameter, 0 <= x_0 <= CAPITAL_BOUND (the path least squares reduced through the
        pseudo-inverse; the constant residual e is left out)."""
        import cvxpy as cp

        x = cp.Variable(self.rank)
        w, v = np.linalg.eigh(self.quadratic.numpy())
        root = (v * np.sqrt(np.clip(w, 0, None))).T
        unconstrained = cp.Parameter(self.rank)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(root @ x - root @ unconstrained)),
                             [x[0] >= 0, x[0] <= CAPITAL_BOUND])

        def set_parameters(theta_row: torch.Tensor) -> None:
            unconstrained.value = self.unconstrained(theta_row[None])[0][0].numpy()

        return problem, x, set_parameters

    def error(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared R + L2(dt x dP_N) distance: (price error)^2 + T mean_points (strategy error)^2."""
        return ((predicted - target) ** 2 * self.weights.to(predicted.dtype)).sum(-1)

    # ----- references --------------------------------------------------------------------
    def in_basis_optimum(self, theta: np.ndarray) -> np.ndarray:
        """(n, 3) -> (n, R): argmin f + g exactly (float64 least squares via a QR of A)."""
        theta = np.asarray(theta, dtype=np.float64)
        h = self.payoff(torch.as_tensor(theta)).numpy()  # (n, N)
        q, r = self._qr
        x = np.linalg.solve(r, q.T @ h.T).T  # unconstrained least squares
        clipped = np.clip(x[:, 0], 0.0, CAPITAL_BOUND)
        moved = clipped != x[:, 0]
        if moved.any():  # x_0 at its bound: re-solve the strategy with x_0 fixed
            rest = self.wealth_matrix[:, 1:]
            target = h[moved] - clipped[moved, None] * self.wealth_matrix[None, :, 0]
            x[moved, 1:] = np.linalg.lstsq(rest, target.T, rcond=None)[0].T
            x[moved, 0] = clipped[moved]
        return x

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        """(n, 3) -> (n, 1 + N n) values of the in-basis optimum: [price, theta at the points]."""
        out = []
        for start in range(0, len(theta), 100):
            chunk = self.in_basis_optimum(theta[start:start + 100])
            out.append(self.basis.decode(chunk))
            if progress is not None:
                progress(len(chunk))
        return np.concatenate(out) if out else np.zeros((0, len(self.points)))

    def reference_error(self) -> float:
        return 1e-9

    def heston_reference(self, theta: np.ndarray) -> np.ndarray:
        """(n, 3) -> (n, 1 + N n): [Heston price at (S0, v0, T), minimal-variance hedge
        dC/dS + rho sigma_v / S dC/dv at every path point (t_k, S_k, v_k^+), maturity T - t_k]."""
        theta = np.asarray(theta, dtype=np.float64)
        put = np.isin(np.round(theta[:, 0]), (1, 3))
        strike, trigger = theta[:, 1], theta[:, 2]
        n_paths, steps = self.spot.shape[0], len(self.times) - 1
        out = np.empty((len(theta), 1 + n_paths * steps))
        out[:, 0] = heston.gap_prices(self.market, np.array([self.market.s0]), np.array([self.market.v0]),
                                      self.market.maturity, strike, trigger, put)[0]
        hedges = out[:, 1:].reshape(len(theta), n_paths, steps)
        for k in range(steps):
            tau = self.market.maturity - self.times[k]
            hedges[:, :, k] = heston.minimal_variance_hedges(self.market, self.spot[:, k], self.variance[:, k],
                                                             tau, strike, trigger, put).T
        return out

    @classmethod
    def default_training(cls):
        """Paper size (R = 11, L = 10, M = 40, gamma 0.5, start std 0.001), started as relaxed
        forward-backward splitting (the authors' N(0, 0.001^2) start diverges at any lr that trains in
        minutes); Adam lr 1e-4, cosine, 2,000 steps of 100 instances; the test set is the paper's
        out-of-distribution gap options."""
        return {"model": {"depth": 10, "width": 40, "gamma": 0.5, "init": "forward-backward",
                          "init_std": 0.001, "start_std": 0.001},
                "training": {"steps": 2000, "batch_size": 100, "lr": 1e-4, "grad_clip": 0.1,
                             "eval_every": 250, "test_law": "ood"}}
