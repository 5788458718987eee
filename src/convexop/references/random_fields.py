"""Gaussian random fields that draw the input functions of the operator-learning data sets.

- `RBFField`: the DeepONet field on [0, 1]: mean 0, kernel exp(-(x - y)^2 / (2 l^2)), drawn exactly
  at the sensors through an eigendecomposition of the kernel matrix (Cholesky with jitter, as in
  Lu et al.'s code, fails at l = 0.2 on 100 points: the matrix is numerically singular).
- `periodic_field`: the FNO Burgers field N(0, 625 (-Laplace + 25 I)^-2) on the periodic [0, 1),
  as a Karhunen-Loeve sum over the Laplacian's eigenfunctions sqrt(2) cos / sin(2 pi k x),
  eigenvalues lambda_k = 625 (4 pi^2 k^2 + 25)^-2, for 1 <= k <= modes. As in the FNO authors'
  generator (GRF1.m) the mean mode k = 0 is held at 0; the truncation at `modes` = 127 drops a
  variance below 1e-9 and makes the field band-limited, so its samples on any grid of >= 256
  points determine it exactly.
"""

from __future__ import annotations

import math

import numpy as np


class RBFField:
    """Zero-mean GRF with the squared-exponential kernel, sampled at fixed sensors.

    sensors: (m,) points; length_scale l; draws are (n, m) float64.
    """

    def __init__(self, sensors: np.ndarray, length_scale: float = 0.2, variance: float = 1.0) -> None:
        self.sensors = np.asarray(sensors, dtype=np.float64)
        gaps = self.sensors[:, None] - self.sensors[None, :]
        kernel = variance * np.exp(-0.5 * (gaps / length_scale) ** 2)
        eigenvalues, eigenvectors = np.linalg.eigh(kernel)
        self.factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[None, :]  # K = F F^T

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((n, len(self.sensors))) @ self.factor.T


def burgers_eigenvalues(modes: int, scale: float = 625.0, shift: float = 25.0) -> np.ndarray:
    """lambda_k = scale (4 pi^2 k^2 + shift)^-2 for k = 1..modes."""
    k = np.arange(1, modes + 1, dtype=np.float64)
    return scale * (4.0 * math.pi**2 * k**2 + shift) ** -2


def periodic_field(n: int, resolution: int, rng: np.random.Generator, modes: int = 127) -> np.ndarray:
    """(n, resolution) draws of the Burgers initial field at x_j = j / resolution.

    The same rng state gives the same functions at every resolution (the coefficients are drawn
    first, then evaluated), so a draw at 256 points is a subsample of the draw at 1024.
    """
    if 2 * modes >= resolution:
        raise ValueError(f"resolution {resolution} cannot carry {modes} modes")
    a = rng.standard_normal((n, modes))
    b = rng.standard_normal((n, modes))
    amplitude = np.sqrt(2.0 * burgers_eigenvalues(modes))
    spectrum = np.zeros((n, resolution // 2 + 1), dtype=np.complex128)
    # irfft(X)_j = (1/N) [X_0 + 2 sum_k Re(X_k e^{2 pi i k j / N})]; we want sum_k Re(amp (a - i b) e^{...})
    spectrum[:, 1:modes + 1] = 0.5 * resolution * amplitude * (a - 1j * b)
    return np.fft.irfft(spectrum, n=resolution, axis=-1)
