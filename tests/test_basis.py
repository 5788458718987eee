import math

import numpy as np

from convexop.basis import hermite_basis, path_polynomial_basis, time_brownian_basis, total_degree_indices


def test_hermite_orthonormal_and_derivative_matches_finite_differences():
    u = np.linspace(-5, 5, 500)
    basis = hermite_basis(u, 8)
    # h_7 has 1.3e-4 of its mass outside [-5, 5]; the quadrature itself is exact to ~1e-10
    assert np.abs(basis.gram - np.eye(8)).max() < 2e-4
    assert np.abs(basis.gram[:5, :5] - np.eye(5)).max() < 1e-6
    fd = np.gradient(basis.values, u, axis=0)
    assert np.abs(fd - basis.derivative)[5:-5].max() < 2e-3


def test_scaled_hermite_orthonormal_and_projection_reproduces_span():
    u = np.linspace(-5, 5, 2001)
    basis = hermite_basis(u, 6, scale=0.6)
    assert np.abs(basis.gram - np.eye(6)).max() < 1e-8
    coefficients = np.random.default_rng(0).standard_normal(6)
    assert np.allclose(basis.project(basis.decode(coefficients)), coefficients, atol=1e-10)
    # derivative of the scaled functions against finite differences
    fd = np.gradient(basis.values, u, axis=0)
    assert np.abs(fd - basis.derivative)[5:-5].max() < 1e-3


def test_projection_is_l2_orthogonal():
    u = np.linspace(-5, 5, 500)
    basis = hermite_basis(u, 8)
    y = 5 * u * np.exp(-u**2) * (1 + 0.3 * np.sin(3 * u))
    residual = y - basis.decode(basis.project(y))
    assert np.abs(basis.values.T @ (basis.weights * residual)).max() < 1e-12


def test_multi_index_order_is_the_authors():
    assert total_degree_indices(2, 3) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1),
                                          (3, 0)]
    assert len(total_degree_indices(3, 2)) == 10


def test_time_brownian_gram_matches_monte_carlo():
    rng = np.random.default_rng(1)
    steps, paths = 200, 20000
    times = np.linspace(0, 1, steps + 1)[1:]
    increments = rng.standard_normal((paths, steps)) * math.sqrt(1 / steps)
    brownian = np.cumsum(increments, axis=1)
    basis = time_brownian_basis(times, brownian, degree=3)
    assert basis.rank == 10
    assert basis.labels[3] == "W^3/sqrt(3!)"
    empirical = basis.quadrature_gram()
    assert np.abs(empirical - basis.gram).max() < 0.05 * np.abs(basis.gram).max()


def test_path_polynomial_labels_and_rank():
    times = np.linspace(0, 1, 5)
    y = np.ones((3, 5))
    basis = path_polynomial_basis(times, {"Y": y, "V": 2 * y}, degree=2)
    assert basis.rank == 10
    assert basis.labels[0] == "1" and "t^2" in basis.labels
