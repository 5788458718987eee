"""Merton utility maximisation with a floor in a Black-Scholes market: closed form and simulation.

Market: bond B_t = e^{rt}, stock dS = S (mu dt + sigma dW), market price of risk
lambda = (mu - r) / sigma, state-price density H_t = Z_t / B_t with Z_t = exp(-lambda W_t - lambda^2 t / 2).
Investor: initial wealth y0, utility U(X_T) = (X_T - floor)^(1-eta) / (1-eta) with X_T >= floor.

Closed form (floor insurance + Merton): keep floor e^{-r(T-t)} in the bond and trade the *excess
wealth* Y_t = X_t - floor e^{-r(T-t)} with the Merton fraction k = (mu - r) / (sigma^2 eta). Then
dY = Y (r + lambda^2 / eta) dt + Y (lambda / eta) dW, so

    Y_t = (y0 - floor e^{-rT}) e^{rt} Z_t^{-1/eta} exp(-lambda^2 (1 - eta) t / (2 eta^2)),
    pi*_t = k Y_t   (amount held in the stock; > 0 whenever floor < y0 e^{rT}).

Equivalently X*_T = floor + (y H_T)^{-1/eta} with y fixed by the budget E[H_T X*_T] = y0; Y_T is
a function of (t, W_t) only, so pi* is Markov in (t, W_t). The floor uses the bond at T (the
authors' code used t_98: their quirk 4, fixed here).

Everything here is float64 numpy and vectorised over paths; `eta`, `floor` are scalars or arrays
broadcastable against the path arrays (e.g. shape (n_instances, 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UTILITY_EPS = 1e-5  # the authors' shift: U(y) = ((y - floor)^+ + 1e-5)^(1-eta) / (1-eta)


@dataclass(frozen=True)
class Market:
    """Black-Scholes market and investor constants (the paper's later code version)."""

    s0: float = 1.0
    r: float = 0.005
    mu: float = 0.01
    sigma: float = 0.06
    y0: float = 1.0
    horizon: float = 1.0

    @property
    def lam(self) -> float:
        """Market price of risk lambda = (mu - r) / sigma."""
        return (self.mu - self.r) / self.sigma

    @property
    def floor_bound(self) -> float:
        """Riskless value of the initial wealth at T, y0 e^{rT}: the floor must lie below it."""
        return self.y0 * math.exp(self.r * self.horizon)


def brownian_sample(n_paths: int, n_steps: int, horizon: float = 1.0, seed: int = 0):
    """A fixed Brownian sample on the left-point grid t_k = k dt, dt = T / n, k = 0..n-1.

    Returns (times (n,), W (N, n) = W at t_k with W_{t_0} = 0, dW (N, n) = W_{t_{k+1}} - W_{t_k}
    ~ N(0, dt), so the last increment ends at T). Drawn with numpy default_rng(seed).
    """
    dt = horizon / n_steps
    rng = np.random.default_rng(seed)
    dw = rng.standard_normal((n_paths, n_steps)) * math.sqrt(dt)
    w = np.concatenate([np.zeros((n_paths, 1)), np.cumsum(dw[:, :-1], axis=1)], axis=1)
    return np.arange(n_steps) * dt, w, dw


def merton_fraction(eta, market: Market = Market()):
    """k = (mu - r) / (sigma^2 eta): the fraction of excess wealth held in the stock."""
    return (market.mu - market.r) / (market.sigma**2 * np.asarray(eta, dtype=np.float64))


def excess_wealth(t, w, eta, floor, market: Market = Market()):
    """Closed-form optimal excess wealth Y_t = X*_t - floor e^{-r(T-t)} at (t, W_t) (broadcast)."""
    t, w = np.asarray(t, np.float64), np.asarray(w, np.float64)
    eta, floor = np.asarray(eta, np.float64), np.asarray(floor, np.float64)
    lam, r = market.lam, market.r
    y_start = market.y0 - floor * math.exp(-r * market.horizon)
    # e^{rt} Z_t^{-1/eta} e^{-lam^2 (1-eta) t / (2 eta^2)}, with log Z_t = -lam W_t - lam^2 t / 2
    exponent = r * t + (lam * w + 0.5 * lam**2 * t) / eta - lam**2 * (1 - eta) * t / (2 * eta**2)
    return y_start * np.exp(exponent)


def merton_strategy(t, w, eta, floor, market: Market = Market()):
    """Closed-form optimal amount in the stock pi*_t = k Y_t at (t, W_t) (broadcast)."""
    return merton_fraction(eta, market) * excess_wealth(t, w, eta, floor, market)


def linear_terminal_wealth(pi: np.ndarray, times: np.ndarray, dw: np.ndarray, market: Market = Market()):
    """The family's (authors') wealth sum, affine in pi:
    X_T = e^{rT} (y0 + sum_k pi_k e^{-r t_k} ((mu - r) dt + sigma dW_k)).

    pi: (..., N, n) amounts at the decision times; times (n,); dw (N, n) -> (..., N)."""
    dt = market.horizon / len(times)
    gains = np.exp(-market.r * times) * ((market.mu - market.r) * dt + market.sigma * dw)
    return math.exp(market.r * market.horizon) * (market.y0 + (pi * gains).sum(-1))


def wealth_matrix(values: np.ndarray, times: np.ndarray, dw: np.ndarray, market: Market = Market()):
    """(a, M) with X_T = a + M x for pi = sum_j x_j phi_j: values (N*n, R) path-major basis
    values at the decision points; returns a float and M (N, R)."""
    paths, steps = dw.shape
    dt = market.horizon / steps
    gains = np.exp(market.r * (market.horizon - times)) * ((market.mu - market.r) * dt + market.sigma * dw)
    matrix = np.einsum("ik,ikj->ij", gains, values.reshape(paths, steps, -1))
    return market.y0 * math.exp(market.r * market.horizon), matrix


def simulate_wealth(pi: np.ndarray, times: np.ndarray, dw: np.ndarray, market: Market = Market()):
    """Self-financing wealth with exact GBM stock returns and exact bond growth between decision
    times: X_{k+1} = (X_k - pi_k) e^{r dt} + pi_k S_{k+1} / S_k (amount pi_k held over [t_k, t_{k+1}]).

    pi: (N, n), or a callable (t_k, W_{t_k}, X_{t_k}) -> (N,) for feedback strategies;
    returns X at t_0..t_n, shape (N, n + 1) (the last column is X_T)."""
    paths, steps = dw.shape
    dt = market.horizon / steps
    growth = np.exp((market.mu - 0.5 * market.sigma**2) * dt + market.sigma * dw)
    bond = math.exp(market.r * dt)
    x = np.empty((paths, steps + 1))
    x[:, 0] = market.y0
    w = np.zeros(paths)
    for k in range(steps):
        amount = pi(times[k], w, x[:, k]) if callable(pi) else pi[:, k]
        x[:, k + 1] = (x[:, k] - amount) * bond + amount * growth[:, k]
        w = w + dw[:, k]
    return x


def utility(x, eta, floor):
    """U(y) = ((y - floor)^+ + 1e-5)^(1-eta) / (1-eta), broadcast."""
    eta = np.asarray(eta, np.float64)
    return (np.maximum(np.asarray(x) - floor, 0.0) + UTILITY_EPS) ** (1 - eta) / (1 - eta)
