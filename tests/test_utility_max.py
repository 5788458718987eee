"""utility-max (experiment 2): parameters, the closed-form reference along simulated paths, the
basis floor, the sampled in-basis program (against CVXPY), g and the activation, a GEO smoke run."""

import math

import numpy as np
import pytest
import torch

from convexop.data import read_dataset
from convexop.errors import InputError
from convexop.families import UtilityMax, get_family
from convexop.references import merton
from convexop.training.config import resolve_config
from convexop.training.run import train_run

MARKET = merton.Market()


@pytest.fixture(scope="module")
def family():
    return get_family("utility-max")


# ----- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("instance, field", [
    ({"eta": 1.0, "floor": 0.2}, "eta"), ({"eta": 0.0, "floor": 0.2}, "eta"),
    ({"eta": 1.7, "floor": 0.2}, "eta"), ({"eta": -0.2, "floor": 0.2}, "eta"),
    ({"eta": float("nan"), "floor": 0.2}, "eta"), ({"eta": "high", "floor": 0.2}, "eta"),
    ({"eta": 0.5, "floor": -0.1}, "floor"), ({"eta": 0.5, "floor": MARKET.floor_bound}, "floor"),
    ({"eta": 0.5, "floor": 3.0}, "floor"), ({"eta": 0.5}, "floor"),
    ({"eta": 0.5, "floor": 0.1, "rho": 1}, "rho"),
])
def test_bad_parameters_are_refused_naming_the_field(family, instance, field):
    with pytest.raises(InputError) as error:
        family.theta_from_instances([instance])
    message = str(error.value)
    assert f"instances[0].{field}" in message and "\n" not in message


def test_good_parameters_and_laws(family):
    theta = family.theta_from_instances([{"eta": 0.4, "floor": 0.2}, {"eta": 0.999, "floor": 0.0}])
    assert np.array_equal(theta, [[0.4, 0.2], [0.999, 0.0]])
    for law, scale in (("train", 0.33), ("ood", 1.0)):
        draws = family.sample(20000, np.random.default_rng(0), law)
        assert draws[:, 0].min() >= 0.25 and draws[:, 0].max() <= 0.75
        assert draws[:, 1].min() >= 0 and draws[:, 1].max() < MARKET.floor_bound
        # Exp(scale) truncated to [0, y0 e^{rT}): compare the mean with its closed form
        b = MARKET.floor_bound
        mean = scale - b * math.exp(-b / scale) / (1 - math.exp(-b / scale))
        assert abs(draws[:, 1].mean() - mean) < 4 * draws[:, 1].std() / math.sqrt(len(draws))
    with pytest.raises(InputError, match="law"):
        family.sample(3, np.random.default_rng(0), "weird")
    with pytest.raises(InputError, match="gram"):
        UtilityMax(gram="weird")
    with pytest.raises(InputError, match="n_paths"):
        UtilityMax(n_paths=0)


# ----- the closed form -------------------------------------------------------------------------
def _coarsen(dw: np.ndarray, factor: int) -> np.ndarray:
    return dw.reshape(dw.shape[0], -1, factor).sum(-1)


@pytest.mark.parametrize("eta, floor", [(0.3, 0.5), (0.7, 0.0)])
def test_closed_form_matches_the_simulated_optimal_wealth_along_paths(eta, floor):
    """Trade the Merton fraction of the *simulated* excess wealth (feedback, exact GBM returns);
    the closed-form excess wealth and strategy at (t, W_t) must match it along every path, with an
    error that shrinks like sqrt(dt) (strong order 1/2 of piecewise-constant rebalancing)."""
    _, _, fine = merton.brownian_sample(1000, 1600, seed=3)
    k = merton.merton_fraction(eta)
    errors = []
    for factor in (16, 1):
        dw = _coarsen(fine, factor)
        steps = dw.shape[1]
        times = np.arange(steps) / steps
        wealth = merton.simulate_wealth(lambda t, w, x: k * (x - floor * math.exp(-MARKET.r * (1 - t))), times, dw)
        grid = np.append(times, 1.0)
        brownian = np.concatenate([np.zeros((len(dw), 1)), np.cumsum(dw, axis=1)], axis=1)
        excess = wealth - floor * np.exp(-MARKET.r * (1 - grid))
        closed = merton.excess_wealth(grid, brownian, eta, floor)
        errors.append(np.abs(excess / closed - 1).mean())
        strategy = merton.merton_strategy(times, brownian[:, :-1], eta, floor)
        assert np.allclose(strategy, k * closed[:, :-1])  # pi* = k Y
        assert (wealth[:, -1] > floor).all() and (strategy > 0).all()
    assert errors[1] < 2e-3 and errors[1] < errors[0] / 2.5  # 16x finer: about 4x smaller


def test_closed_form_budget_and_optimality():
    """E[H_T X*_T] = y0 (the budget), and the Merton fraction beats 0.7x and 1.4x of it in expected
    utility on a common antithetic sample."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(500_000)
    w = np.concatenate([w, -w])
    for eta, floor in ((0.3, 0.5), (0.6, 0.9)):
        terminal = floor + merton.excess_wealth(1.0, w, eta, floor)
        deflated = math.exp(-MARKET.r) * np.exp(-MARKET.lam * w - MARKET.lam**2 / 2) * terminal
        assert abs(deflated.mean() - MARKET.y0) < 3 * deflated.std() / math.sqrt(len(w) / 2)
    times, _, dw = merton.brownian_sample(4000, 200, seed=0)
    dw = np.concatenate([dw, -dw])
    eta, floor = 0.7, 0.0
    k = merton.merton_fraction(eta)
    utilities = []
    for c in (0.7, 1.0, 1.4):
        wealth = merton.simulate_wealth(lambda t, _, x, c=c: c * k * (x - floor * math.exp(-MARKET.r * (1 - t))),
                                        times, dw)
        utilities.append(merton.utility(wealth[:, -1], eta, floor).mean())
    assert utilities[1] > utilities[0] and utilities[1] > utilities[2]


def test_reference_is_the_closed_form_at_the_sample_points(family):
    theta = np.array([[0.4, 0.2], [0.7, 0.9]])
    reference = family.reference(theta)
    assert reference.shape == (2, 500 * 100)
    t, w = family.points[:, 0], family.points[:, 1]
    assert np.allclose(t.reshape(500, 100)[0], np.arange(100) / 100)  # grid t_k = k dt (quirk 2 fixed)
    assert np.allclose(w.reshape(500, 100), family.brownian)
    y_start = 1.0 - 0.2 * math.exp(-MARKET.r)  # bond at T (quirk 4 fixed)
    assert np.isclose(reference[0, 0], merton.merton_fraction(0.4) * y_start)


# ----- the basis floor -------------------------------------------------------------------------
def test_best_in_basis_approximation_is_within_a_tenth_of_a_percent(family):
    theta = family.sample(200, np.random.default_rng(1))
    reference = torch.as_tensor(family.reference(theta))
    coefficients = torch.as_tensor(family.best_approximation(theta))
    best = family.decode(coefficients)
    relative = ((best - reference).norm(dim=1) / reference.norm(dim=1)).numpy()
    assert relative.max() < 1e-3 and relative.mean() < 3e-4
    # least squares: the residual is orthogonal to every basis function on the points
    values = torch.as_tensor(family.basis.values)
    assert ((reference - best) @ values).abs().max() < 1e-8 * (reference @ values).abs().max()
    # and any other combination is worse
    worse = family.decode(coefficients + 1e-3 * torch.randn_like(coefficients))
    assert ((worse - reference).norm(dim=1) > (best - reference).norm(dim=1)).all()


# ----- g and the activation --------------------------------------------------------------------
def test_g_is_minus_expected_utility_of_the_discounted_wealth_sum(family):
    theta = np.array([[0.4, 0.2], [0.7, 0.95]])
    x = np.zeros((2, 10))
    x[:, 0], x[:, 1] = 1.5, 0.3
    pi = (x @ family.basis.values.T).reshape(2, 500, 100)
    wealth = merton.linear_terminal_wealth(pi, family.times, family.increments)
    expected = -merton.utility(wealth, theta[:, :1], theta[:, 1:]).mean(1)
    got = family.g(torch.as_tensor(x), torch.as_tensor(theta)).numpy()
    assert np.allclose(got, expected, rtol=1e-12)


def test_fused_g_and_activation_match_plain_autograd(family):
    plain = get_family("utility-max", fused=False)
    theta = torch.as_tensor(family.sample(4, np.random.default_rng(2)))
    x = 0.3 * torch.randn(4, 6, 10, dtype=torch.float64)
    x[..., 0] += 1.0
    x.requires_grad_(True)
    for fam in (family, plain):
        value = fam.g(x, theta)
        assert value.shape == (4, 6)
    fused_grad, = torch.autograd.grad(family.g(x, theta).sum(), x)
    plain_grad, = torch.autograd.grad(plain.g(x, theta).sum(), x)
    assert torch.allclose(family.g(x, theta), plain.g(x, theta), rtol=1e-12)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-10, atol=1e-14)
    z = torch.randn(5, 10, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 10, dtype=torch.float64)
    fused_grad, = torch.autograd.grad((family.activation(z) * weights).sum(), z)
    plain_grad, = torch.autograd.grad((plain.activation(z) * weights).sum(), z)
    assert torch.allclose(family.activation(z), plain.activation(z), rtol=1e-10, atol=1e-12)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-10, atol=1e-12)
    # float32 path (training) agrees with float64
    z32 = z.detach().float()
    assert torch.allclose(family.activation(z32).double(), family.activation(z.detach()), rtol=1e-4, atol=1e-4)


def test_activation_is_the_projection_of_the_positive_part(family):
    z = torch.randn(3, 10, dtype=torch.float64)
    pi = family.decode(z).clamp(min=0).numpy()
    inner = pi @ family.basis.values * (MARKET.horizon / pi.shape[1])  # T mean[max(pi,0) phi_j]
    expected = np.linalg.solve(family.basis.gram, inner.T).T  # default: the sample Gram
    assert np.allclose(family.activation(z).numpy(), expected, rtol=1e-9, atol=1e-12)
    exact = get_family("utility-max", gram="exact")  # the authors' exact Gram
    expected = np.linalg.solve(exact.gram_exact, inner.T).T
    assert np.allclose(exact.activation(z).numpy(), expected, rtol=1e-9, atol=1e-12)
    # with the sample Gram, P max(E z, 0) = z wherever pi = E z >= 0 at every point; not with the
    # exact Gram, whose P E differs from the identity by the sampling error of the Gram matrix
    positive = torch.zeros(1, 10, dtype=torch.float64)
    positive[0, 0], positive[0, 4] = 1.0, 0.5  # 1 + t / 2 > 0
    assert torch.allclose(family.activation(positive), positive, atol=1e-12)
    assert not torch.allclose(exact.activation(positive), positive, atol=1e-3)


# ----- the sampled in-basis program ------------------------------------------------------------
def test_in_basis_optimum_matches_cvxpy_and_beats_the_closed_form(family):
    pytest.importorskip("cvxpy")
    # 1 - eta = 1/2, 3/4, 2/5: CVXPY's second-order-cone form of the power is then exact
    theta = np.array([[0.5, 0.2], [0.25, 0.0], [0.6, 0.9]])
    ours = family.in_basis_optimum(theta)
    t = torch.as_tensor(theta)
    g_ours = family.g(torch.as_tensor(ours), t).numpy()
    values = family.basis.values
    for k, (eta, floor) in enumerate(theta):
        theirs = merton.solve_sampled_program_cvxpy(values, family.wealth_offset, family.wealth_matrix_np, eta, floor)
        g_theirs = family.g(torch.as_tensor(theirs[None]), t[k:k + 1]).item()
        assert g_ours[k] <= g_theirs + 1e-9
        assert abs(g_ours[k] - g_theirs) < 1e-8
        pi_ours, pi_theirs = values @ ours[k], values @ theirs
        assert np.linalg.norm(pi_ours - pi_theirs) < 1e-4 * np.linalg.norm(pi_theirs)
    # feasible, and at least as good as the (feasible) best approximation of the closed form
    assert (ours @ values.T).min() >= -1e-12
    assert ((family.terminal_wealth(torch.as_tensor(ours)).numpy() - theta[:, 1:]).min()) >= 0
    best = family.best_approximation(theta)
    assert (g_ours < family.g(torch.as_tensor(best), t).numpy() - 1e-3).all()


def test_sampled_program_refuses_floors_above_the_riskless_wealth(family):
    with pytest.raises(ValueError, match="floor"):
        merton.solve_sampled_program(family.basis.values, family.wealth_offset, family.wealth_matrix_np,
                                     0.5, family.wealth_offset + 0.01)


# ----- training ----------------------------------------------------------------------------------
def test_geo_training_smoke_lowers_the_loss(tmp_path):
    # the family's default training (relative loss, lr 3e-2, clipping) on a small sample and GEO
    settings = {"n_paths": "40", "n_times": "20", "steps": "100", "eval_every": "25", "checkpoint_every": "100",
                "n_instances": "100", "batch_size": "40", "depth": "4", "width": "10", "tensorboard": "false"}
    config = resolve_config(UtilityMax, "geo", settings)
    _, history = train_run(config, tmp_path)
    targets = read_dataset(tmp_path / "train.h5").targets
    zero_strategy = float((targets.astype(np.float64) ** 2).mean())  # MSE of pi = 0, ~ the start
    assert history[-1]["train_mse"] < 0.4 * zero_strategy
    assert history[-1]["train_mse"] < history[0]["train_mse"]
    assert (tmp_path / "model.safetensors").is_file()


def test_default_training_is_the_paper_size():
    config = resolve_config(UtilityMax, "geo", {})
    assert (config.model_kwargs["depth"], config.model_kwargs["width"]) == (10, 40)
    assert get_family("utility-max").rank == 10
