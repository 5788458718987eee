import numpy as np
import pytest
import torch

from convexop import api
from convexop.basis import hermite_functions
from convexop.errors import InputError
from convexop.families import get_family
from convexop.references import elliptic_equation_2d

AXIS = np.linspace(-5.0, 5.0, 64)


def spectral_linear_solution(nu, a, c1, c2):
    """xi = 0: y_hat = s_hat / (1 + nu |k|^2 / 2) on a wide periodic square, at AXIS x AXIS (u1 slowest)."""
    n, length = 512, 40.0
    u = -length / 2 + length * np.arange(n) / n  # spacing 10/128: AXIS is not on it; interpolate spectrally
    frequency = 2 * np.pi * np.fft.fftfreq(n, length / n)
    s = elliptic_equation_2d.source(u[:, None], u[None, :], a, c1, c2)
    transform = np.fft.fft2(s) / (1 + 0.5 * nu * (frequency[:, None] ** 2 + frequency[None, :] ** 2))
    basis = np.exp(1j * np.outer(AXIS + length / 2, frequency)) / n  # trigonometric interpolant at AXIS
    return np.real(basis @ transform @ basis.T).reshape(-1)


@pytest.mark.parametrize("nu, a, c1, c2", [(0.1, 4.0, 0.3, -0.6), (0.6, -2.0, -1.0, 1.5)])
def test_reference_matches_spectral_solution_of_linear_case(nu, a, c1, c2):
    # xi = 0 makes the equation linear; the comparison also pins the layout (u1 varying slowest)
    values = elliptic_equation_2d.solve_elliptic_2d(np.array([[nu, a, c1, c2]]), AXIS, xi=0.0)[0]
    exact = spectral_linear_solution(nu, a, c1, c2)
    assert np.abs(values - exact).max() < 2e-5
    assert np.abs(exact).max() > 0.1


def test_reference_self_converges_and_the_kink_matters():
    theta = np.array([[0.05, 5.0, 0.3, -0.4]])
    default = elliptic_equation_2d.solve_elliptic_2d(theta, AXIS)
    refined = elliptic_equation_2d.solve_elliptic_2d(theta, AXIS, refinement=4)
    assert np.abs(default - refined).max() < 1.5e-3  # nu = 0.05, a = 5: the law's hardest corner
    assert np.sqrt(((default - refined) ** 2).mean()) < 1e-4
    linear = elliptic_equation_2d.solve_elliptic_2d(theta, AXIS, xi=0.0)
    negative = linear[0] < -0.05
    assert (default[0][negative] < linear[0][negative]).all()  # min(y, 0) deepens the negative lobe


def test_points_layout_and_tensor_basis():
    family = get_family("elliptic-pde-2d")
    points = family.points
    assert points.shape == (4096, 2) and family.rank == 36
    assert np.allclose(points[:64, 0], -5.0) and np.allclose(points[:64, 1], AXIS)  # u1 varies slowest
    assert np.allclose(points.reshape(64, 64, 2)[:, 0, 0], AXIS)
    values, _ = hermite_functions(AXIS, 6, 0.85)
    x = torch.zeros(1, 36, dtype=torch.float64)
    x[0, 1 * 6 + 2] = 1.0  # coefficient (j, l) = (1, 2) at index j r + l: h_1(u1) h_2(u2)
    expected = np.outer(values[:, 1], values[:, 2]).reshape(-1)
    assert np.allclose(family.decode(x)[0].numpy(), expected, atol=1e-14)
    assert family.labels[8] == "h_1(u1)h_2(u2)"


def test_in_basis_optimum_certified_and_close_to_reference():
    theta = get_family("elliptic-pde-2d").sample(4, np.random.default_rng(7))
    reference = torch.tensor(elliptic_equation_2d.solve_elliptic_2d(theta, AXIS))
    for rank, scale, tolerance in ((36, 0.85, 2e-4), (144, 0.7, 1e-5)):
        family = get_family("elliptic-pde-2d", rank=rank, scale=scale)
        optimum = torch.tensor(family.in_basis_optimum(theta))
        assert family.certificate(optimum, torch.tensor(theta)).measure.max() <= 1e-8
        error = family.error(family.decode(optimum), reference).mean()
        floor = family.error(family.decode(family.project(reference)), reference).mean()
        assert error < 1.3 * floor + 1e-8  # the Galerkin optimum is as good as the basis allows
        assert error < tolerance


def test_program_pieces_are_exact():
    family = get_family("elliptic-pde-2d", rank=25, scale=0.8)
    theta = torch.tensor(family.sample(3, np.random.default_rng(5)))
    assert torch.allclose(family.load(theta, torch.float64), family.load_by_quadrature(theta), atol=1e-12)
    x = torch.randn(3, family.rank, dtype=torch.float64)
    gradient, hessian = family.gradient_and_hessian(x, theta)
    program = family.program(theta)
    _, autograd_gradient = program.value_and_gradient(x)
    assert torch.allclose(gradient, autograd_gradient, atol=1e-12)
    jacobian = torch.autograd.functional.jacobian(lambda z: family.gradient_and_hessian(z[None], theta[:1])[0][0], x[0])
    assert torch.allclose(jacobian, hessian[0], atol=1e-12)  # the generalised Hessian, axis by axis
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert (eigenvalues[:, 0] >= program.strong_convexity - 1e-9).all()
    assert (eigenvalues[:, -1] <= program.lipschitz + 1e-9).all()
    offsets = torch.randn(7, family.rank, dtype=torch.float64)
    assert torch.allclose(family.queries(x, offsets, theta), family.g(x[:, None] + offsets[None], theta), atol=1e-10)
    z = torch.zeros(2, family.rank, dtype=torch.float64)
    z[0, 0], z[1, 0] = 1.0, -1.0  # h_0 h_0 > 0 everywhere: prox_phi halves it; its negative: divided by 1.5
    out = family.activation(z)
    assert torch.allclose(out[0], 0.5 * z[0], atol=1e-10) and torch.allclose(out[1], z[1] / 1.5, atol=1e-10)


@pytest.mark.parametrize("instance, field", [
    ({"nu": 0.01, "a": 3.0, "c1": 0.0, "c2": 0.0}, "nu"), ({"nu": 1.5, "a": 3.0, "c1": 0.0, "c2": 0.0}, "nu"),
    ({"nu": 0.1, "a": -11.0, "c1": 0.0, "c2": 0.0}, "a"), ({"nu": 0.1, "a": 3.0, "c1": 2.5, "c2": 0.0}, "c1"),
    ({"nu": 0.1, "a": 3.0, "c1": 0.0, "c2": -2.1}, "c2"), ({"nu": 0.1, "a": 3.0, "c1": 0.0}, "c2"),
])
def test_out_of_domain_is_refused_naming_the_parameter(instance, field):
    family = get_family("elliptic-pde-2d")
    with pytest.raises(InputError, match=field):
        family.theta_from_instances([instance])


def test_rank_must_be_a_square():
    with pytest.raises(InputError, match="rank"):
        get_family("elliptic-pde-2d", rank=30)


def test_fno_takes_the_grid_and_refuses_other_2d_points_clearly():
    from convexop.models import build_model

    family = get_family("elliptic-pde-2d", rank=4)
    assert build_model("fno", family, width=4, modes=3, depth=1).dims == 2  # the 64 x 64 grid, u1 slowest
    order = np.random.default_rng(0).permutation(len(family.points))

    class Shuffled(type(family)):
        points = property(lambda self: np.asarray(self.basis.points)[order])

    with pytest.raises(InputError, match="not a uniform 2-D tensor grid") as error:
        build_model("fno", Shuffled(rank=4), width=4, modes=3, depth=1)
    assert len(str(error.value).strip().splitlines()) == 1


def test_training_smoke_lowers_the_loss(tmp_path):
    family = get_family("elliptic-pde-2d", rank=16)
    _, history = api.train(family, tmp_path, rank=16, n_instances=8, steps=40, batch_size=6, eval_every=10,
                           depth=4, width=32, lr=1e-3)
    assert history[-1]["train_mse"] < 0.5 * history[0]["train_mse"]
    assert np.isfinite(history[-1]["test_mse"])
