import numpy as np
import pytest
import torch

from convexop.families import get_family


def test_reference_is_box_minimiser_and_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    family = get_family("toy-box")
    theta = family.sample(12, np.random.default_rng(3))
    theta[:6, 7:9] = np.random.default_rng(4).normal(size=(6, 2))  # switch on the log-sum-exp term
    ours = family.in_basis_optimum(theta)
    for k, row in enumerate(theta):
        p = family.instance_from_theta(row)
        x = cp.Variable(2)
        exponents = cp.hstack([np.array(p["beta"])[0] * x[0], np.array(p["beta"])[1] * x[1], np.log(p["kappa"])])
        a = np.array(p["A"])
        objective = 0.5 * cp.quad_form(x, cp.psd_wrap(a)) + np.array(p["b"]) @ x + p["c"] + cp.log_sum_exp(exponents)
        cp.Problem(cp.Minimize(objective), [x >= -1, x <= 1]).solve(solver=cp.CLARABEL)
        got = family.objective(torch.tensor(ours[k:k + 1]), torch.tensor(row[None])).item()
        assert got <= objective.value + 1e-7
        assert np.abs(ours[k] - x.value).max() < 1e-4


def test_certificate_zero_at_optimum_positive_elsewhere():
    family = get_family("toy-box")
    theta = family.sample(50, np.random.default_rng(5))
    optimum = torch.tensor(family.in_basis_optimum(theta))
    t = torch.tensor(theta)
    assert family.certificate(optimum, t).measure.max() < 1e-9
    assert (family.certificate(optimum * 0.5 + 0.1, t).measure > 1e-4).float().mean() > 0.9


def test_authors_labels_differ_from_true_minimiser():
    family = get_family("toy-box")
    theta = family.sample(2000, np.random.default_rng(0))
    wrong = np.abs(family.authors_target(theta) - family.in_basis_optimum(theta)).max(1) > 1e-6
    assert 0.5 < wrong.mean() < 0.7  # the authors' labels are wrong on ~59% of training problems


def test_ood_minimisers():
    family = get_family("toy-box")
    theta = family.sample(10, np.random.default_rng(1), law="ood")
    optimum = family.in_basis_optimum(theta)
    assert np.allclose(optimum[:5], 1.0) and np.allclose(optimum[5:], -1.0)
