"""Heston (1993) semi-closed-form prices and minimal-variance hedges of (gap) calls and puts.

Model (zero interest rate; prices are risk-neutral with r = 0 and no variance risk premium, so the
variance keeps kappa, theta, sigma_v under the pricing measure):

    dS = mu S dt + sqrt(v) S dW^1,   dv = kappa (theta - v) dt + sigma_v sqrt(v) dW^2,  d<W^1,W^2> = rho dt

(mu only drives the simulated paths, never a price). With x = log S and j = 1, 2,

    P_j(K) = 1/2 + (1/pi) int_0^inf Re[ e^{-iu log K} f_j(u) / (iu) ] du,  f_j = exp(C_j + D_j v + iu x),

written in the "little Heston trap" form of Albrecher et al. (2007), continuous in u for every
maturity. A gap call (payoff (S_T - K) 1{S_T >= K'}) costs S P_1(K') - K P_2(K'); a gap put
((K - S_T) 1{S_T <= K'}) costs K (1 - P_2(K')) - S (1 - P_1(K')); calls and puts are the gap
options with trigger K' = K. Derivatives of P_j come from the same integrals (d/dx multiplies the
integrand by iu, d/dv by D_j), and the minimal-variance hedge is

    hedge = dC/dS + (rho sigma_v / S) dC/dv = P_1 + [dP_1/dx + rho sigma_v dP_1/dv]
                                              - (K / S) [dP_2/dx + rho sigma_v dP_2/dv]   (- 1 for puts).

Integration: composite 16-point Gauss-Legendre on [0, U], with U where the integrand's modulus
bound drops below 1e-12 and panels short enough to resolve the oscillation e^{iu (x - log K)}
(at most 1.5 periods per panel) and the decay scale of f_j. Points are grouped by variance, and the
u-nodes are shared by a group, so each group costs one real matrix product (points x nodes) @
(nodes x strikes): the hedges along 500 paths x 100 times for hundreds of strikes take seconds.
Checked (tests/test_hedging.py, benchmarks/hedging.py) against scipy quad, finite differences
and an independent Monte Carlo (`monte_carlo_gap_prices`, 10^6 paths in the benchmark).

Simulation: `simulate_euler` draws the fixed real-world sample of the hedging family (Euler with
full truncation: v^+ = max(v, 0) in the drift and diffusion of both S and v, drift mu for S);
`monte_carlo_gap_prices` is the independent risk-neutral pricer (drift 0, log-Euler for S, full
truncation for v), with a coupled half-as-fine run that estimates the time-discretisation bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
KINDS = ("p", "x", "v", "hedge")  # integrand kernels: 1/(iu), 1, D/(iu), 1 + rho sigma_v D/(iu)
MONEYNESS_CAP = 10.0  # |log(S/K)| beyond this is treated as this (digital probabilities are 0/1)


@dataclass(frozen=True)
class HestonModel:
    """Heston market constants (defaults: experiment 3 of arXiv 2508.14995, later code version)."""

    s0: float = 10.0
    v0: float = 0.05
    mu: float = 0.02
    kappa: float = 4.0
    long_run_variance: float = 0.05
    sigma_v: float = 0.3
    rho: float = -0.7
    maturity: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "s0": (self.s0 > 0, "(0, inf)"), "v0": (self.v0 > 0, "(0, inf)"),
            "mu": (True, "finite real numbers"), "kappa": (self.kappa > 0, "(0, inf)"),
            "long_run_variance": (self.long_run_variance > 0, "(0, inf)"),
            "sigma_v": (self.sigma_v > 0, "(0, inf)"), "rho": (-1 <= self.rho <= 1, "[-1, 1]"),
            "maturity": (self.maturity > 0, "(0, inf)"),
        }
        for name, (ok, domain) in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok:
                raise InputError(name, value, domain)


def char_exponents(model: HestonModel, u: np.ndarray, tau: float, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(C_j, D_j) of f_j = exp(C_j + D_j v + iu log S) at real u > 0, maturity tau (little trap form)."""
    kappa, theta, sigma, rho = model.kappa, model.long_run_variance, model.sigma_v, model.rho
    half, b = (0.5, kappa - rho * sigma) if j == 1 else (-0.5, kappa)
    iu = 1j * np.asarray(u, dtype=np.float64)
    beta = b - rho * sigma * iu
    d = np.sqrt(beta**2 - sigma**2 * (2 * half * iu + iu**2))
    g = (beta - d) / (beta + d)
    decay = np.exp(-d * tau)
    c = kappa * theta / sigma**2 * ((beta - d) * tau - 2.0 * np.log((1.0 - g * decay) / (1.0 - g)))
    dd = (beta - d) / sigma**2 * (1.0 - decay) / (1.0 - g * decay)
    return c, dd


def _kernel(kind: str, u: np.ndarray, d: np.ndarray, rho_sigma: float) -> np.ndarray:
    iu = 1j * u
    if kind == "p":
        return 1.0 / iu
    if kind == "x":
        return np.ones_like(iu)
    if kind == "v":
        return d / iu
    return 1.0 + rho_sigma * d / iu


def quadrature(model: HestonModel, tau: float, v_min: float, v_max: float, omega: float,
               tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes u and weights w (both (n_u,)) on [0, U] for variances in
    [v_min, v_max] and oscillation frequencies |x - log K| <= omega."""
    grid = np.geomspace(1e-2, 1e7, 600)
    bound = np.zeros_like(grid)
    rho_sigma = abs(model.rho) * model.sigma_v
    for j in (1, 2):
        c, d = char_exponents(model, grid, tau, j)
        worst = np.maximum(c.real + d.real * v_min, c.real + d.real * v_max)
        kernel = np.maximum(1.0, (1.0 + rho_sigma * np.abs(d)) / grid)
        bound = np.maximum(bound, np.exp(worst) * kernel)
    above = np.nonzero(bound >= tol)[0]
    upper = float(grid[min(above[-1] + 1, len(grid) - 1)]) if len(above) else float(grid[0])
    spread = math.sqrt((v_max + model.long_run_variance) * tau)
    panels = max(8, math.ceil(upper * (omega + 1.0) / (3 * math.pi)), math.ceil(upper * spread / 2))
    edges = np.linspace(0.0, upper, panels + 1)
    half = np.diff(edges)[:, None] / 2
    u = ((edges[:-1, None] + half) + half * _NODES[None, :]).reshape(-1)
    w = (half * _WEIGHTS[None, :]).reshape(-1)
    return u, w


def fourier_integrals(model: HestonModel, tau: float, log_spot: np.ndarray, variance: np.ndarray,
                      log_strike: np.ndarray, kinds: tuple[tuple[int, str], ...], group: int = 128,
                      chunk: int = 1024) -> np.ndarray:
    """(1/pi) int_0^inf Re[e^{iu (x_p - k_m)} f_j(u; v_p, tau) kernel(u)] du for every (j, kind).

    log_spot, variance: (p,) points at one maturity tau > 0; log_strike: (m,).
    Returns (len(kinds), p, m). P_j = 1/2 + the ("p") integral; d/dx P_j = ("x"); d/dv P_j = ("v").
    """
    log_spot = np.asarray(log_spot, dtype=np.float64)
    variance = np.maximum(np.asarray(variance, dtype=np.float64), 0.0)
    center = float(np.mean(log_spot))
    strikes = np.clip(np.asarray(log_strike, dtype=np.float64), log_spot.min() - MONEYNESS_CAP,
                      log_spot.max() + MONEYNESS_CAP) - center
    out = np.zeros((len(kinds), len(log_spot), len(strikes)))
    order = np.argsort(variance)
    rho_sigma = model.rho * model.sigma_v
    for start in range(0, len(order), group):
        members = order[start:start + group]
        x, v = log_spot[members] - center, variance[members]
        omega = float(np.max(np.abs(x[:, None] - strikes[None, :])))
        u, w = quadrature(model, tau, float(v.min()), float(v.max()), omega)
        for begin in range(0, len(u), chunk):
            uu, ww = u[begin:begin + chunk], w[begin:begin + chunk] / math.pi
            exponents = {j: char_exponents(model, uu, tau, j) for j in {j for j, _ in kinds}}
            rows = []
            for j, kind in kinds:
                c, d = exponents[j]
                a = np.exp(c[None, :] + d[None, :] * v[:, None] + 1j * uu[None, :] * x[:, None])
                rows.append(a * (_kernel(kind, uu, d, rho_sigma) * ww)[None, :])
            a = np.concatenate(rows, axis=0)  # (kinds * group, nodes)
            e = np.exp(-1j * uu[:, None] * strikes[None, :])  # (nodes, m)
            real = np.concatenate([a.real, -a.imag], axis=1) @ np.concatenate([e.real, e.imag], axis=0)
            out[:, members, :] += real.reshape(len(kinds), len(members), len(strikes))
    return out


def gap_prices(model: HestonModel, spot: np.ndarray, variance: np.ndarray, tau: float,
               strike: np.ndarray, trigger: np.ndarray, put: np.ndarray) -> np.ndarray:
    """(p, m) Heston prices of gap options (m,) at points (spot, variance) (p,) with maturity tau.

    put: (m,) bool. Gap call: S P1(K') - K P2(K'); gap put: K (1 - P2(K')) - S (1 - P1(K')).
    """
    spot, strike = np.asarray(spot, dtype=np.float64), np.asarray(strike, dtype=np.float64)
    i = fourier_integrals(model, tau, np.log(spot), variance, np.log(trigger), ((1, "p"), (2, "p")))
    p1, p2 = 0.5 + i[0], 0.5 + i[1]
    call = spot[:, None] * p1 - strike[None, :] * p2
    return np.where(np.asarray(put)[None, :], call - spot[:, None] + strike[None, :], call)


def gap_greeks(model: HestonModel, spot: np.ndarray, variance: np.ndarray, tau: float,
               strike: np.ndarray, trigger: np.ndarray, put: np.ndarray) -> dict[str, np.ndarray]:
    """Price, dC/dS, dC/dv and the minimal-variance hedge, each (p, m) (see gap_prices)."""
    spot, strike = np.asarray(spot, dtype=np.float64), np.asarray(strike, dtype=np.float64)
    kinds = ((1, "p"), (2, "p"), (1, "x"), (2, "x"), (1, "v"), (2, "v"))
    i = fourier_integrals(model, tau, np.log(spot), variance, np.log(trigger), kinds)
    s, k, put = spot[:, None], strike[None, :], np.asarray(put)[None, :]
    p1, p2 = 0.5 + i[0], 0.5 + i[1]
    price = np.where(put, s * p1 - k * p2 - s + k, s * p1 - k * p2)
    delta = p1 + i[2] - k / s * i[3] - put.astype(float)
    vega = s * i[4] - k * i[5]
    return {"price": price, "delta": delta, "vega": vega,
            "hedge": delta + model.rho * model.sigma_v / s * vega}


def minimal_variance_hedges(model: HestonModel, spot: np.ndarray, variance: np.ndarray, tau: float,
                            strike: np.ndarray, trigger: np.ndarray, put: np.ndarray) -> np.ndarray:
    """(p, m) hedge dC/dS + (rho sigma_v / S) dC/dv at points (p,) for gap options (m,), tau > 0.

    Uses three integrals instead of six (the hedge kernel 1 + rho sigma_v D/(iu) merges x and v).
    """
    spot, strike = np.asarray(spot, dtype=np.float64), np.asarray(strike, dtype=np.float64)
    kinds = ((1, "p"), (1, "hedge"), (2, "hedge"))
    i = fourier_integrals(model, tau, np.log(spot), variance, np.log(trigger), kinds)
    hedge = 0.5 + i[0] + i[1] - strike[None, :] / spot[:, None] * i[2]
    return hedge - np.asarray(put, dtype=float)[None, :]


def gap_payoff(terminal: np.ndarray, strike: np.ndarray, trigger: np.ndarray, put: np.ndarray) -> np.ndarray:
    """(N,), (m,) x 3 -> (N, m): (S_T - K) 1{S_T >= K'} (gap call), (K - S_T) 1{S_T <= K'} (gap put).
    With K' = K these are the call (S_T - K)^+ and the put (K - S_T)^+."""
    s = np.asarray(terminal, dtype=np.float64)[:, None]
    k, trig, put = (np.asarray(a)[None, :] for a in (strike, trigger, put))
    return np.where(put, (k - s) * (s <= trig), (s - k) * (s >= trig))


def simulate_euler(model: HestonModel, n_paths: int, n_steps: int, seed: int,
                   drift: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Euler scheme with full truncation on t_k = k T / n, k = 0..n (numpy default_rng(seed)).

        S_{k+1} = S_k (1 + drift dt + sqrt(v_k^+) dW^1_k)
        v_{k+1} = v_k + kappa (theta - v_k^+) dt + sigma_v sqrt(v_k^+) (rho dW^1_k + sqrt(1 - rho^2) dW^2_k)

    drift defaults to mu (real-world paths). Returns times (n+1,), spot (N, n+1), variance (N, n+1)
    (the scheme's v, which may dip below 0; v^+ is the variance in force). Raises InputError if a
    price leaves (0, inf) (only for extreme constants).
    """
    drift = model.mu if drift is None else drift
    dt = model.maturity / n_steps
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2, n_paths, n_steps)) * math.sqrt(dt)
    spot = np.empty((n_paths, n_steps + 1))
    variance = np.empty((n_paths, n_steps + 1))
    spot[:, 0], variance[:, 0] = model.s0, model.v0
    mix = math.sqrt(1.0 - model.rho**2)
    for k in range(n_steps):
        root = np.sqrt(np.maximum(variance[:, k], 0.0))
        spot[:, k + 1] = spot[:, k] * (1.0 + drift * dt + root * noise[0, :, k])
        variance[:, k + 1] = (variance[:, k] + model.kappa * (model.long_run_variance - root**2) * dt
                              + model.sigma_v * root * (model.rho * noise[0, :, k] + mix * noise[1, :, k]))
    if not (spot > 0).all():
        raise InputError("market constants", None, "",
                         "the Euler scheme drove a stock price to <= 0; lower v0 / sigma_v or raise n_steps")
    return np.arange(n_steps + 1) * dt, spot, variance


def monte_carlo_gap_prices(model: HestonModel, strike: np.ndarray, trigger: np.ndarray, put: np.ndarray,
                           n_paths: int = 1_000_000, n_steps: int = 1000, seed: int = 12345,
                           chunk: int = 50_000) -> dict[str, np.ndarray]:
    """Independent risk-neutral Monte Carlo prices of gap options (m,) at (s0, v0), maturity T.

    Log-Euler for S (a martingale step by step: log S += -v^+ dt / 2 + sqrt(v^+) dW^1) and full-
    truncation Euler for v, n_steps steps; alongside, a coarse run with n_steps / 2 steps driven by
    the summed increments of the same Brownian paths. For a weak-order-1 scheme the fine run's
    bias is about mean(coarse - fine), estimated with a small standard error thanks to the coupling.
    Also a sharper control-variate estimate with S_T (E S_T = s0 exactly for this scheme):
    price_cv = mean(H - beta (S_T - s0)), beta the sample regression coefficient.
    Returns price, standard_error, price_cv, standard_error_cv, bias, bias_standard_error ((m,) each).
    """
    if n_steps % 2:
        raise ValueError("n_steps must be even (the coarse run uses pairs of steps)")
    strike, trigger, put = (np.atleast_1d(np.asarray(a)) for a in (strike, trigger, put))
    rng = np.random.default_rng(seed)
    dt = model.maturity / n_steps
    mix = math.sqrt(1.0 - model.rho**2)
    kappa, theta, sigma, rho = model.kappa, model.long_run_variance, model.sigma_v, model.rho
    sums = np.zeros((5, len(strike)))  # sums of H, H^2, coarse - fine, (coarse - fine)^2, H (S_T - s0)
    spot_sums = np.zeros(2)  # sums of S_T - s0, (S_T - s0)^2
    done = 0
    while done < n_paths:
        size = min(chunk, n_paths - done)
        log_fine = np.full(size, math.log(model.s0))
        log_coarse = log_fine.copy()
        v_fine, v_coarse = np.full(size, model.v0), np.full(size, model.v0)
        pair = np.zeros((2, size))
        for k in range(n_steps):
            dw = rng.standard_normal((2, size)) * math.sqrt(dt)
            positive = np.maximum(v_fine, 0.0)
            root = np.sqrt(positive)
            log_fine += -0.5 * positive * dt + root * dw[0]
            v_fine += kappa * (theta - positive) * dt + sigma * root * (rho * dw[0] + mix * dw[1])
            pair += dw
            if k % 2 == 1:
                positive = np.maximum(v_coarse, 0.0)
                root = np.sqrt(positive)
                log_coarse += -positive * dt + root * pair[0]
                v_coarse += 2 * kappa * (theta - positive) * dt + sigma * root * (rho * pair[0] + mix * pair[1])
                pair[:] = 0.0
        terminal = np.exp(log_fine)
        fine = gap_payoff(terminal, strike, trigger, put)
        difference = gap_payoff(np.exp(log_coarse), strike, trigger, put) - fine
        excess = terminal - model.s0
        sums += np.stack([fine.sum(0), (fine**2).sum(0), difference.sum(0), (difference**2).sum(0),
                          excess @ fine])
        spot_sums += [excess.sum(), (excess**2).sum()]
        done += size
    mean, mean_sq, bias, bias_sq, cross = sums / n_paths
    spot_mean, spot_sq = spot_sums / n_paths
    variance, spot_variance = np.maximum(mean_sq - mean**2, 0), spot_sq - spot_mean**2
    covariance = cross - mean * spot_mean
    beta = covariance / spot_variance
    residual_variance = np.maximum(variance - covariance**2 / spot_variance, 0)
    return {"price": mean, "standard_error": np.sqrt(variance / (n_paths - 1)),
            "price_cv": mean - beta * spot_mean, "standard_error_cv": np.sqrt(residual_variance / (n_paths - 2)),
            "bias": bias, "bias_standard_error": np.sqrt(np.maximum(bias_sq - bias**2, 0) / (n_paths - 1)),
            "n_paths": n_paths, "n_steps": n_steps}
