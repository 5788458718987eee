"""Reference solvers of the classical operator-learning problems (all float64 numpy, batched).

- `antiderivative`: s(x) = int_0^x u for u given at sensors. u is taken to be the not-a-knot cubic
  spline through the sensor values (exact for cubic polynomials; for the RBF field with l = 0.2 on
  100 sensors the interpolation error is ~1e-8) and its integral is evaluated exactly.
- `diffusion_reaction`: s_t = D s_xx + k s^2 + u(x) on [0, 1] x [0, T], s = 0 at t = 0 and at
  x = 0, 1 (Lu et al.'s "dr" problem, D = k = 0.01). Second-order finite differences in x,
  Crank-Nicolson in t for diffusion, reaction and source (the trapezoidal rule), after two
  backward-Euler half steps (Rannacher start: the source does not vanish at the boundary, so the
  corners t = 0, x = 0, 1 are incompatible and plain Crank-Nicolson rings there). The implicit
  equation of each step is solved by a fixed-point iteration with the constant SPD tridiagonal
  matrix factorised once (contraction ~ k dt max|s| ~ 1e-4, iterated to 1e-14).
- `burgers`: u_t + (u^2 / 2)_x = nu u_xx, periodic on [0, 1), pseudo-spectral in x (2/3-rule
  dealiasing) with the fourth-order exponential time-differencing Runge-Kutta scheme ETDRK4 of
  Cox-Matthews as stabilised by Kassam-Trefethen (phi-functions by a contour mean). Measured on
  the Burgers data (nu = 0.1, 1024 points): max error 2e-9 at 200 steps (2e-7 of the RMS of
  u(., 1)), observed order ~2.5-3 (stiff order reduction), 256 points agree with 1024 to 1e-12;
  it matches the Cole-Hopf solution to 1e-11.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.linalg import cho_solve_banded, cholesky_banded

DIFFUSION = 0.01
REACTION = 0.01


def antiderivative(u: np.ndarray, sensors: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
    """s(x) = int_{sensors[0]}^x spline(u): u (n, m) at sensors (m,) -> (n, len(points)).

    points default to the sensors.
    """
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    sensors = np.asarray(sensors, dtype=np.float64)
    points = sensors if points is None else np.asarray(points, dtype=np.float64)
    primitive = CubicSpline(sensors, u, axis=1, bc_type="not-a-knot").antiderivative()
    return primitive(points) - primitive(sensors[:1])


def _interpolate(u: np.ndarray, sensors: np.ndarray, x: np.ndarray) -> np.ndarray:
    if len(sensors) == len(x) and np.allclose(sensors, x, rtol=0, atol=1e-14):
        return u
    return CubicSpline(sensors, u, axis=1, bc_type="not-a-knot")(x)


def diffusion_reaction(u: np.ndarray, sensors: np.ndarray, nx: int = 100, nt: int = 100,
                       diffusion: float = DIFFUSION, reaction: float = REACTION,
                       horizon: float = 1.0, tol: float = 1e-14) -> np.ndarray:
    """s on the grid x = linspace(0, 1, nx), t = linspace(0, horizon, nt): (n, nx, nt), s[:, i, j] = s(x_i, t_j).

    u (n, m): the source at `sensors` (cubic-spline interpolated to x when the grids differ).
    """
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    x = np.linspace(0.0, 1.0, nx)
    source = _interpolate(u, np.asarray(sensors, dtype=np.float64), x)[:, 1:-1].T  # (nx-2, n)
    h, dt = 1.0 / (nx - 1), horizon / (nt - 1)
    inner = nx - 2
    n = u.shape[0]

    def factor(theta_dt: float) -> np.ndarray:
        """Upper banded Cholesky factor of I - theta_dt D Lap (Lap with zero Dirichlet ends)."""
        r = theta_dt * diffusion / h**2
        banded = np.zeros((2, inner))
        banded[0, 1:] = -r
        banded[1, :] = 1.0 + 2.0 * r
        return cholesky_banded(banded)

    def laplacian(s: np.ndarray) -> np.ndarray:
        out = -2.0 * s
        out[1:] += s[:-1]
        out[:-1] += s[1:]
        return out / h**2

    def implicit_solve(chol: np.ndarray, rhs: np.ndarray, theta_dt: float, guess: np.ndarray) -> np.ndarray:
        """Solve (I - theta_dt D Lap) s - theta_dt k s^2 = rhs by fixed-point iteration."""
        s = guess
        for _ in range(50):
            new = cho_solve_banded((chol, False), rhs + theta_dt * reaction * s**2)
            change = np.max(np.abs(new - s)) if new.size else 0.0
            s = new
            if change <= tol * max(1.0, float(np.max(np.abs(s)))):
                return s
        raise RuntimeError("diffusion-reaction step did not converge; reduce the time step")

    out = np.zeros((n, nx, nt))
    s = np.zeros((inner, n))
    # Rannacher start: two backward-Euler half steps to t_1
    euler = factor(0.5 * dt)
    for _ in range(2):
        s = implicit_solve(euler, s + 0.5 * dt * source, 0.5 * dt, s)
    out[:, 1:-1, 1] = s.T
    crank = factor(0.5 * dt)  # the same matrix: I - (dt/2) D Lap
    for j in range(2, nt):
        rhs = s + 0.5 * dt * (diffusion * laplacian(s) + reaction * s**2) + dt * source
        s = implicit_solve(crank, rhs, 0.5 * dt, s)
        out[:, 1:-1, j] = s.T
    return out


class BurgersSolver:
    """ETDRK4 pseudo-spectral solver of viscous Burgers on the periodic [0, 1) at `resolution` points.

    `solve(u0)`: u0 (n, resolution) at x_j = j / resolution -> u(., horizon), same shape.
    """

    def __init__(self, resolution: int = 1024, viscosity: float = 0.1, steps: int = 200,
                 horizon: float = 1.0, contour_points: int = 32) -> None:
        self.resolution, self.viscosity, self.steps, self.horizon = resolution, viscosity, steps, horizon
        dt = horizon / steps
        k = 2.0 * math.pi * np.fft.rfftfreq(resolution, d=1.0 / resolution)  # angular wavenumbers
        linear = -viscosity * k**2
        self.derivative = 1j * k
        # 2/3-rule dealiasing of the quadratic term: keep |mode| <= resolution / 3
        self.keep = (np.arange(len(k)) <= resolution // 3).astype(np.float64)
        self.e = np.exp(dt * linear)
        self.e2 = np.exp(dt * linear / 2.0)
        roots = np.exp(1j * math.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
        z = dt * linear[:, None] + roots[None, :]
        ez = np.exp(z)
        self.q = dt * np.real(np.mean((np.exp(z / 2.0) - 1.0) / z, axis=1))
        self.f1 = dt * np.real(np.mean((-4.0 - z + ez * (4.0 - 3.0 * z + z**2)) / z**3, axis=1))
        self.f2 = dt * np.real(np.mean((2.0 + z + ez * (z - 2.0)) / z**3, axis=1))
        self.f3 = dt * np.real(np.mean((-4.0 - 3.0 * z - z**2 + ez * (4.0 - z)) / z**3, axis=1))

    def nonlinear(self, v: np.ndarray) -> np.ndarray:
        """Fourier coefficients of -(u^2 / 2)_x, dealiased."""
        u = np.fft.irfft(v * self.keep, n=self.resolution, axis=-1)
        return -0.5 * self.derivative * np.fft.rfft(u * u, axis=-1) * self.keep

    def solve(self, u0: np.ndarray) -> np.ndarray:
        u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
        if u0.shape[-1] != self.resolution:
            raise ValueError(f"u0 has {u0.shape[-1]} points, the solver {self.resolution}")
        v = np.fft.rfft(u0, axis=-1)
        for _ in range(self.steps):
            nv = self.nonlinear(v)
            a = self.e2 * v + self.q * nv
            na = self.nonlinear(a)
            b = self.e2 * v + self.q * na
            nb = self.nonlinear(b)
            c = self.e2 * a + self.q * (2.0 * nb - nv)
            nc = self.nonlinear(c)
            v = self.e * v + self.f1 * nv + 2.0 * self.f2 * (na + nb) + self.f3 * nc
        return np.fft.irfft(v, n=self.resolution, axis=-1)


def trigonometric_resample(values: np.ndarray, resolution: int) -> np.ndarray:
    """Periodic samples (n, N) at j / N -> (n, resolution) at j / resolution, by zero-padding or
    truncating the spectrum (exact for trigonometric polynomials of degree < min(N, resolution) / 2)."""
    values = np.atleast_2d(values)
    n_in = values.shape[-1]
    if n_in == resolution:
        return values.copy()
    spectrum = np.fft.rfft(values, axis=-1)
    keep = min(n_in, resolution) // 2
    out = np.zeros((values.shape[0], resolution // 2 + 1), dtype=np.complex128)
    out[:, :keep] = spectrum[:, :keep]
    return np.fft.irfft(out, n=resolution, axis=-1) * (resolution / n_in)


def burgers(u0: np.ndarray, viscosity: float = 0.1, solver_resolution: int = 1024, steps: int = 200,
            horizon: float = 1.0) -> np.ndarray:
    """u(., horizon) for periodic initial values u0 (n, N) at x_j = j / N (N dividing solver_resolution):
    u0 is interpolated trigonometrically to the solver grid, solved, and subsampled back to N points."""
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
    n_points = u0.shape[-1]
    if solver_resolution % n_points:
        raise ValueError(f"{n_points} points do not divide the solver grid of {solver_resolution}")
    solver = BurgersSolver(solver_resolution, viscosity, steps, horizon)
    fine = trigonometric_resample(u0, solver_resolution)
    return solver.solve(fine)[:, :: solver_resolution // n_points]


def burgers_cole_hopf(x: np.ndarray, t: float, viscosity: float, amplitude: float = 0.5) -> np.ndarray:
    """Exact periodic solution by the Cole-Hopf transform: phi = 1 + a e^{-4 pi^2 nu t} cos(2 pi x)
    solves the heat equation, u = -2 nu phi_x / phi solves Burgers (amplitude a < 1)."""
    decay = amplitude * math.exp(-4.0 * math.pi**2 * viscosity * t)
    phi = 1.0 + decay * np.cos(2.0 * math.pi * x)
    return 4.0 * math.pi * viscosity * decay * np.sin(2.0 * math.pi * x) / phi
