"""The built-in `qp-dc3-1000` family: DC3's QP recipe at 1000 variables, 500 equalities, 500 inequalities."""

import numpy as np
import pytest
import torch

from convexop.families import FAMILIES, get_family
from convexop.families.qp_dc3 import QPDC3, QPDC3Large, dc3_problem
from convexop.serving.polish import polish_answers


@pytest.fixture(scope="module")
def family():
    return get_family("qp-dc3-1000")


@pytest.fixture(scope="module")
def problem():
    return dc3_problem(17, 1000, 500, 500, 2000)


@pytest.fixture(scope="module")
def solved(family):
    theta = family.dc3_instances()[-2:]  # the last two of its DC3-style instances
    return theta, family.reference(theta)


def test_registered_next_to_qp_dc3():
    assert FAMILIES["qp-dc3-1000"] is QPDC3Large and FAMILIES["qp-dc3"] is QPDC3
    small = get_family("qp-dc3")
    assert small.rank == 100 and small.theta_size == 50 and small.parameters[0].shape == (50,)
    assert QPDC3Large.parameters[0].shape == (500,) and QPDC3Large.name != QPDC3.name
    assert "default_training" in vars(QPDC3Large) and QPDC3Large.default_training != QPDC3.default_training
    defaults = QPDC3Large.default_training()
    assert defaults["model"]["width"] >= 2 * 1000 and defaults["model"]["init"] == "forward-backward"
    assert defaults["training"]["loss"] == "objective"


def test_sizes_and_recipe(family, problem):
    rng = np.random.RandomState(17)  # DC3's order: Q, p, A, X, G
    assert np.array_equal(problem["Q"], rng.random_sample(1000))
    assert np.array_equal(problem["p"], rng.random_sample(1000))
    assert np.array_equal(problem["A"], rng.normal(size=(500, 1000)))
    assert np.array_equal(problem["X"], rng.uniform(-1, 1, size=(2000, 500)))
    assert np.array_equal(problem["G"], rng.normal(size=(500, 1000)))
    pinv = np.linalg.pinv(problem["A"])
    assert np.allclose(problem["h"], np.abs(problem["G"] @ pinv).sum(1))
    # h makes A^+ x feasible for every x in [-1, 1]^500: the worst vertex of each row meets h with equality
    vertices = np.sign(problem["G"] @ pinv)
    assert np.allclose(np.einsum("ij,ij->i", problem["G"] @ pinv, vertices), problem["h"])
    x = family.sample(5, np.random.default_rng(0))
    assert x.shape == (5, 500) and np.abs(x).max() <= 1
    assert (problem["G"] @ pinv @ x.T <= problem["h"][:, None] + 1e-9).all()
    assert np.allclose(problem["A"] @ pinv @ x.T, x.T)
    assert family.rank == 1000 and family.theta_size == 500
    assert family.labels[0] == "lambda_1" and family.labels[499] == "lambda_500" and family.labels[-1] == "mu_500"
    assert np.array_equal(family.dc3_instances(), problem["X"])
    assert abs(family.lipschitz_bound - 1.0) < 1e-8 and family.block_diagonal


def test_queries_are_the_exact_expansion(family):
    generator = torch.Generator().manual_seed(0)
    theta = torch.as_tensor(family.sample(3, np.random.default_rng(1)))
    x = 0.1 * torch.randn(3, 1000, generator=generator, dtype=torch.float64)
    offsets = 0.01 * torch.randn(4, 1000, generator=generator, dtype=torch.float64)
    direct = family.g(x[:, None, :] + offsets[None], theta)
    assert torch.allclose(family.queries(x, offsets, theta), direct, rtol=1e-10, atol=1e-9)


def test_reference_is_certified_and_matches_an_independent_solver(family, problem, solved):
    optimize = pytest.importorskip("scipy.optimize")
    theta, z = solved
    theta_t = torch.as_tensor(theta)
    gap, violation = family.dual(theta_t).certificate(torch.as_tensor(z), family.interior(theta_t))
    assert gap.max() <= 1e-8 and violation.max() <= 1e-8
    # independently: the dual reduced to mu >= 0 (lambda eliminated), built in numpy and solved by scipy's BVLS
    k = np.vstack([problem["A"], problem["G"]])
    kq = k / problem["Q"][None, :]
    m = kq @ k.T
    s, r = m[:500, :500], m[:500, 500:]
    hessian = m[500:, 500:] - r.T @ np.linalg.solve(s, r)
    upper = np.linalg.cholesky((hessian + hessian.T) / 2).T
    y_ours = family.primal(family.project(torch.as_tensor(z)), theta_t).numpy()
    for row in range(2):
        c = kq @ problem["p"] + np.concatenate([theta[row], problem["h"]])
        reduced = c[500:] - r.T @ np.linalg.solve(s, c[:500])
        target = -np.linalg.solve(upper.T, reduced)
        mu = optimize.lsq_linear(upper, target, bounds=(0, np.inf), method="bvls", tol=1e-13).x
        lam = -np.linalg.solve(s, c[:500] + r @ mu)
        y = -(problem["p"] + k.T @ np.concatenate([lam, mu])) / problem["Q"]
        assert np.abs(mu - z[row, 500:]).max() < 1e-6 * (1 + np.abs(mu).max())
        assert np.abs(lam - z[row, :500]).max() < 1e-6 * (1 + np.abs(lam).max())
        assert np.abs(y - y_ours[row]).max() < 1e-6
        assert np.abs(problem["A"] @ y - theta[row]).max() < 1e-8
        assert (problem["G"] @ y - problem["h"]).max() < 1e-8


def test_polish_certifies_a_perturbed_optimum(family, solved):
    theta, z = solved
    theta_t = torch.as_tensor(theta)
    optimum = family.project(torch.as_tensor(z))
    noise = torch.randn(optimum.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    start = optimum + 1e-3 * noise * optimum.abs().max()
    before = family.certificate(start, theta_t)
    assert (before.gap > 1e-6).all()
    result = polish_answers(family, start, theta_t, 1e-6)
    assert result.converged.all()
    after = family.certificate(result.x, theta_t)
    assert (after.gap <= 1e-6).all() and (after.violation <= 1e-6).all()
    assert torch.allclose(result.x, optimum, atol=1e-4 * float(optimum.abs().max()))
