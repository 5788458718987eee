import numpy as np
import pytest
import torch

from convexop.errors import InputError
from convexop.families import get_family
from convexop.references import elliptic_equation

POINTS = np.linspace(-5.0, 5.0, 500)
CASES = [(0.01, 5.0, 0.3), (0.4, 5.0, 1.0), (1e-4, 3.0, -0.5), (1.0, 1.0, -2.0), (0.05, -10.0, 2.0)]




@pytest.mark.parametrize("nu, a, c", CASES)
def test_finite_differences_self_converge(nu, a, c):
    default = elliptic_equation.solve_elliptic(np.array([[nu, a, c]]), POINTS)
    k = elliptic_equation.default_refinement(nu)
    refined = elliptic_equation.solve_elliptic(np.array([[nu, a, c]]), POINTS, refinement=2 * k)
    assert np.abs(default - refined).max() <= 1e-5
    assert np.abs(default).max() > 0.1  # a real answer, not the zero function


def test_finite_differences_match_spectral_solution_of_linear_case():
    # xi = 0 makes the equation linear: y_hat = s_hat / (1 + nu k^2 / 2) on a wide periodic grid
    n, length = 2**17, 80.0
    u = -length / 2 + length * np.arange(n) / n
    frequency = 2 * np.pi * np.fft.rfftfreq(n, length / n)
    for nu, a, c in CASES[:3]:
        spectral = np.fft.irfft(np.fft.rfft(elliptic_equation.source(u, a, c)) / (1 + nu * frequency**2 / 2), n)
        grid, values, _ = elliptic_equation.solve_one(nu, a, c, xi=0.0)
        assert np.abs(np.interp(POINTS, grid, values) - np.interp(POINTS, u, spectral)).max() < 2e-6


def test_finite_differences_solve_the_nonlinear_equation():
    # the kink matters: with xi = 0.5 the answer differs from the linear one where y < 0
    nu, a, c = 0.1, 4.0, 0.2
    grid, nonlinear, steps = elliptic_equation.solve_one(nu, a, c)
    _, linear, _ = elliptic_equation.solve_one(nu, a, c, xi=0.0)
    assert 1 <= steps <= 10
    negative = linear < -1e-3
    assert (nonlinear[negative] < linear[negative]).all()  # min(y, 0) source term deepens the negative part
    assert np.allclose(nonlinear[grid > c + 2], linear[grid > c + 2], atol=0.05)


def test_in_basis_optimum_zero_certificate_and_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    family = get_family("elliptic-pde")
    theta = family.sample(6, np.random.default_rng(2))
    optimum = family.in_basis_optimum(theta)
    t = torch.tensor(theta)
    assert family.certificate(torch.tensor(optimum), t).measure.max() <= 1e-10
    v = family.grid_values.numpy()
    w = family.grid_weights().numpy()
    k = family.stiffness.numpy()
    load = family.load(t, torch.float64).numpy()
    for i, (nu, _, _) in enumerate(theta):
        x = cp.Variable(family.rank)
        y = v @ x
        objective = (0.5 * cp.sum(cp.multiply(w, cp.square(cp.pos(y))))
                     + 0.25 * cp.sum(cp.multiply(w, cp.square(cp.neg(y))))
                     + 0.25 * nu * cp.quad_form(x, cp.psd_wrap(k)) - load[i] @ x)
        cp.Problem(cp.Minimize(objective)).solve(solver=cp.CLARABEL)
        assert np.abs(x.value - optimum[i]).max() < 1e-5


def test_in_basis_optimum_converges_to_reference_as_rank_grows():
    theta = get_family("elliptic-pde").sample(12, np.random.default_rng(3))
    reference = elliptic_equation.solve_elliptic(theta, POINTS, refinement=32)
    errors = []
    for rank in (8, 16, 24):
        family = get_family("elliptic-pde", rank=rank, scale=0.7)
        values = family.decode(torch.tensor(family.in_basis_optimum(theta))).numpy()
        errors.append(((values - reference) ** 2).mean())
    assert errors[0] > 5 * errors[1] > 25 * errors[2]
    assert errors[2] < 1e-5


def test_load_is_exact_integral():
    family = get_family("elliptic-pde", rank=12, scale=0.8)
    theta = torch.tensor(family.sample(20, np.random.default_rng(4)))
    assert torch.allclose(family.load(theta, torch.float64), family.load_by_quadrature(theta), atol=1e-12)


def test_activation_is_pointwise_prox_projected():
    family = get_family("elliptic-pde")
    z = torch.zeros(2, family.rank, dtype=torch.float64)
    z[0, 0], z[1, 0] = 1.0, -1.0  # h_0 > 0 everywhere: prox_phi halves it; -h_0: divided by 1.5
    out = family.activation(z)
    assert torch.allclose(out[0], 0.5 * z[0], atol=1e-10)
    assert torch.allclose(out[1], z[1] / 1.5, atol=1e-10)


def test_objective_is_energy_and_gradient_matches_autograd():
    family = get_family("elliptic-pde")
    theta = torch.tensor(family.sample(4, np.random.default_rng(5)))
    x = torch.randn(4, family.rank, dtype=torch.float64)
    gradient, hessian = family.gradient_and_hessian(x, theta)
    program = family.program(theta)
    _, autograd_gradient = program.value_and_gradient(x)
    assert torch.allclose(gradient, autograd_gradient, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert (eigenvalues[:, 0] >= program.strong_convexity - 1e-9).all()
    assert (eigenvalues[:, -1] <= program.lipschitz + 1e-9).all()


@pytest.mark.parametrize("instance, field", [
    ({"nu": 0.0, "a": 3.0, "c": 0.0}, "nu"), ({"nu": 2.0, "a": 3.0, "c": 0.0}, "nu"),
    ({"nu": 0.1, "a": 11.0, "c": 0.0}, "a"), ({"nu": 0.1, "a": 3.0, "c": -2.5}, "c"),
    ({"nu": 0.1, "a": 3.0}, "c"),
])
def test_validation_names_the_parameter(instance, field):
    family = get_family("elliptic-pde")
    with pytest.raises(InputError, match=field):
        family.theta_from_instances([instance])
