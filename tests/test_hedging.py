"""The `hedging` family (experiment 3): validation, the Heston reference, the in-basis optimum,
certificates and a GEO smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import Hedging, get_family
from convexop.references import heston
from convexop.serving.solve import solve_instances
from convexop.training.config import resolve_config
from convexop.training.run import train_run

MARKET = heston.HestonModel()
# one instance of each payoff, plus two whose capital bound is active (x_0 = 10 and x_0 = 0)
INSTANCES = [{"payoff": "call", "strike": 9.5}, {"payoff": "put", "strike": 10.4, "trigger": 10.4},
             {"payoff": "gap_call", "strike": 9.3, "trigger": 10.7},
             {"payoff": "gap_put", "strike": 10.6, "trigger": 9.4},
             {"payoff": "put", "strike": 200.0}, {"payoff": "gap_call", "strike": 12.0, "trigger": 9.0}]


@pytest.fixture(scope="module")
def family():
    return get_family("hedging")


@pytest.fixture(scope="module")
def theta(family):
    return family.theta_from_instances(INSTANCES)


# ----- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("instance, field", [
    ({"payoff": "digital", "strike": 10.0}, "payoff"),
    ({"payoff": "call", "strike": 0.0}, "strike"),
    ({"payoff": "put", "strike": -3.0}, "strike"),
    ({"payoff": "gap_call", "strike": 9.5}, "trigger"),
    ({"payoff": "gap_put", "strike": 10.5, "trigger": -1.0}, "trigger"),
    ({"payoff": "call", "strike": 9.5, "trigger": 10.0}, "trigger"),
    ({"payoff": "call"}, "strike"),
    ({"payoff": "call", "strike": "ten"}, "strike"),
    ({"payoff": "call", "strike": 9.5, "maturity": 2}, "maturity"),
])
def test_bad_instances_name_the_field(family, instance, field):
    with pytest.raises(InputError) as error:
        family.theta_from_instances([instance])
    message = str(error.value)
    assert f"instances[0].{field}" in message and "\n" not in message


@pytest.mark.parametrize("key, value", [("v0", -0.05), ("long_run_variance", -0.01), ("sigma_v", 0.0),
                                        ("rho", -1.5), ("kappa", -4.0), ("s0", 0.0)])
def test_bad_market_constants_name_the_field(key, value):
    with pytest.raises(InputError, match=key):
        Hedging(**{key: value})


def test_cli_refuses_negative_variance_in_one_line(tmp_path, capsys):
    code = main(["train", "hedging", "--out", str(tmp_path / "run"), "--set", "v0=-0.05"])
    err = capsys.readouterr().err
    assert code == 2 and "v0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_laws(family):
    rng = np.random.default_rng(0)
    train = family.sample(400, rng, "train")
    calls, puts = train[0::2], train[1::2]
    assert (calls[:, 0] == 0).all() and (puts[:, 0] == 1).all() and (train[:, 1] == train[:, 2]).all()
    assert 9 <= calls[:, 1].min() and calls[:, 1].max() <= 10 and 10 <= puts[:, 1].min() and puts[:, 1].max() <= 11
    ood = family.sample(400, rng, "ood")
    gap_calls, gap_puts = ood[0::2], ood[1::2]
    assert (gap_calls[:, 0] == 2).all() and (gap_puts[:, 0] == 3).all()
    assert 9 <= gap_calls[:, 1].min() and gap_calls[:, 1].max() <= 10 and 10 <= gap_calls[:, 2].min() <= 11
    assert 10 <= gap_puts[:, 1].min() and gap_puts[:, 1].max() <= 11 and gap_puts[:, 2].max() <= 10
    with pytest.raises(InputError, match="law"):
        family.sample(3, rng, "weird")


# ----- the sample and the quadratic program -----------------------------------------------------
def test_sample_and_basis(family):
    assert family.rank == 11 and family.labels[1:4] == ["1", "V", "V^2"] and family.labels[-1] == "t^2"
    assert family.spot.shape == (500, 101) and family.points.shape == (1 + 500 * 100, 3)
    assert (family.variance >= 0).all() and (family.spot > 0).all()
    again = get_family("hedging")
    assert np.array_equal(again.spot, family.spot)  # fixed, seeded sample
    assert not np.array_equal(get_family("hedging", sample_seed=1).spot, family.spot)


def test_g_is_the_mean_squared_hedging_error(family, theta):
    """g from the precomputed (Q, x_u, e) equals the hedging error re-simulated along the paths."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.5, (len(theta), 11))
    spot = family.spot
    strategy = family.decode(torch.as_tensor(x))[:, 1:].numpy().reshape(len(theta), 500, 100)
    wealth = family.market.s0 * x[:, :1] + (strategy * np.diff(spot, axis=1)[None]).sum(-1)
    payoff = heston.gap_payoff(spot[:, -1], theta[:, 1], theta[:, 2], np.isin(theta[:, 0], (1, 3))).T
    expected = ((payoff - wealth) ** 2).mean(-1)
    t = torch.as_tensor(theta)
    got = family.g(torch.as_tensor(x), t).numpy()
    assert np.allclose(got, expected, rtol=1e-10)
    queries = torch.as_tensor(rng.normal(0, 0.5, (len(theta), 7, 11)))
    batched = family.g(queries, t)
    assert torch.allclose(batched[:, 3], family.g(queries[:, 3], t), rtol=1e-12)
    xx = torch.as_tensor(x).requires_grad_(True)
    autograd = torch.autograd.grad(family.g(xx, t).sum(), xx)[0]
    x_u = family.unconstrained(t)[0]
    closed_form = (family.hessian(torch.as_tensor(x), t) @ (torch.as_tensor(x) - x_u)[..., None])[..., 0]
    assert torch.allclose(autograd, closed_form, rtol=1e-9, atol=1e-9)  # grad g = 2 Q (x - x_u) = H (x - x_u)
    program = family.program(t)  # the in-basis program computes x_u once; same values and gradient
    assert torch.allclose(program.value_and_gradient(torch.as_tensor(x))[1], autograd, rtol=1e-9, atol=1e-9)


def test_in_basis_optimum_matches_cvxpy(family, theta):
    cp = pytest.importorskip("cvxpy")
    ours = family.in_basis_optimum(theta)
    assert ours[4, 0] == 10.0 and ours[5, 0] == 0.0  # the capital bound is active on the last two
    payoff = family.payoff(torch.as_tensor(theta)).numpy()
    matrix = family.wealth_matrix
    for k in range(len(theta)):
        y = cp.Variable(11)
        problem = cp.Problem(cp.Minimize(cp.sum_squares(payoff[k] - matrix @ y) / len(matrix)),
                             [y[0] >= 0, y[0] <= 10])
        problem.solve(solver=cp.CLARABEL)
        got = family.objective(torch.as_tensor(ours[k:k + 1]), torch.as_tensor(theta[k:k + 1])).item()
        assert got <= problem.value + 1e-9 * max(1.0, abs(problem.value))
        assert np.abs(ours[k] - y.value).max() <= 1e-5 * max(1.0, np.abs(ours[k]).max())


def test_certificate_zero_at_optimum_positive_elsewhere(family, theta):
    rng = np.random.default_rng(2)
    more = np.concatenate([theta, family.sample(20, rng, "train"), family.sample(20, rng, "ood")])
    t = torch.as_tensor(more)
    optimum = torch.as_tensor(family.in_basis_optimum(more))
    assert family.certificate(optimum, t).measure.max() < 1e-12
    assert torch.isfinite(family.objective(optimum, t)).all()
    for scale in (1e-2, 1e-4):
        moved = family.activation(optimum + scale * torch.as_tensor(rng.normal(size=optimum.shape)))
        assert (family.certificate(moved, t).measure > 1e-6 * scale).all()
        assert (family.g(moved, t) > family.g(optimum, t)).all()
    outside = optimum.clone()
    outside[:, 0] = -1.0
    report = family.certificate(outside, t)
    assert torch.isinf(family.objective(outside, t)).all() and torch.isinf(report.objective).all()
    assert torch.allclose(report.violation, torch.ones(len(t), dtype=torch.float64)) and (report.measure >= 1).all()


def test_reference_values_are_the_decoded_optimum(family, theta):
    values = family.reference(theta[:2])
    optimum = family.in_basis_optimum(theta[:2])
    assert values.shape == (2, 1 + 500 * 100)
    assert np.allclose(values[:, 0], 10.0 * optimum[:, 0])
    first_path = values[0, 1:101]
    t, y, v = 0.01 * np.arange(100), np.log(family.spot[0, :100] / 10), family.variance[0, :100] / 0.05
    columns = [np.ones(100), v, v**2, y, y * v, y**2, t, t * v, t * y, t**2]
    assert np.allclose(first_path, np.stack(columns, 1) @ optimum[0, 1:])


# ----- the Heston reference ---------------------------------------------------------------------
def test_characteristic_exponents_solve_the_riccati_equations():
    """Independent of the closed form: integrate D' = -(iu + u^2)/2 + (rho sigma iu - kappa) D +
    sigma^2 D^2 / 2, C' = kappa theta D by RK4 (j = 2; j = 1 is j = 2 at u - i)."""
    m = MARKET
    for tau in (1.0, 0.05):
        for j, shift in ((2, 0.0), (1, -1j)):
            u = np.array([0.3, 2.0, 15.0])
            w = u + shift
            c, d = np.zeros(3, complex), np.zeros(3, complex)
            steps = 4000
            h = tau / steps

            def rhs(d, w=w):
                return -0.5 * (1j * w + w**2) + (m.rho * m.sigma_v * 1j * w - m.kappa) * d + 0.5 * m.sigma_v**2 * d**2

            for _ in range(steps):
                k1 = rhs(d)
                k2 = rhs(d + h / 2 * k1)
                k3 = rhs(d + h / 2 * k2)
                k4 = rhs(d + h * k3)
                c += (m.kappa * m.long_run_variance * h / 6
                      * (d + 2 * (d + h / 2 * k1) + 2 * (d + h / 2 * k2) + d + h * k3))
                d += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            closed_c, closed_d = heston.char_exponents(m, u, tau, j)
            assert np.abs(closed_d - d).max() < 1e-9 and np.abs(closed_c - c).max() < 1e-6


def test_prices_match_scipy_quad_and_greeks_match_finite_differences():
    from scipy.integrate import quad

    def probability(j, spot, variance, tau, level):
        def integrand(u):
            c, d = heston.char_exponents(MARKET, np.array([u]), tau, j)
            return (np.exp(c + d * variance + 1j * u * math.log(spot / level)) / (1j * u)).real[0]
        return 0.5 + quad(integrand, 0, np.inf, limit=2000, epsabs=1e-13, epsrel=1e-13)[0] / math.pi

    cases = [(10.0, 0.05, 1.0, 9.5, 10.5), (9.0, 0.01, 0.01, 9.05, 9.05), (11.0, 0.0, 0.02, 10.0, 10.5)]
    for spot, variance, tau, strike, trigger in cases:
        expected = (spot * probability(1, spot, variance, tau, trigger)
                    - strike * probability(2, spot, variance, tau, trigger))
        got = heston.gap_prices(MARKET, np.array([spot]), np.array([variance]), tau, np.array([strike]),
                                np.array([trigger]), np.array([False]))[0, 0]
        assert abs(got - expected) < 1e-10
    spot, variance = np.array([9.0, 10.0, 11.2]), np.array([0.03, 0.05, 0.1])
    strike, trigger, put = np.array([9.5, 10.2, 10.0]), np.array([10.5, 9.5, 10.0]), np.array([False, True, True])
    greeks = heston.gap_greeks(MARKET, spot, variance, 0.5, strike, trigger, put)
    h = 1e-4

    def price(s, v):
        return heston.gap_prices(MARKET, s, v, 0.5, strike, trigger, put)

    assert np.allclose(greeks["delta"], (price(spot + h, variance) - price(spot - h, variance)) / (2 * h), atol=1e-7)
    assert np.allclose(greeks["vega"], (price(spot, variance + h) - price(spot, variance - h)) / (2 * h), atol=1e-5)
    hedge = heston.minimal_variance_hedges(MARKET, spot, variance, 0.5, strike, trigger, put)
    assert np.allclose(hedge, greeks["delta"] + MARKET.rho * MARKET.sigma_v / spot[:, None] * greeks["vega"],
                       atol=1e-12)
    # put-call parity (K' = K): C - P = S - K
    both = heston.gap_prices(MARKET, spot, variance, 0.5, np.array([10.0, 10.0]), np.array([10.0, 10.0]),
                             np.array([False, True]))
    assert np.allclose(both[:, 0] - both[:, 1], spot - 10.0, atol=1e-12)


def test_prices_match_monte_carlo():
    """A smaller variant of the benchmark's 10^6-path check: 2 x 10^5 paths, 200 steps (coupled
    estimate of the discretisation bias well below the standard error)."""
    strike = np.array([9.5, 10.5, 9.3, 10.6])
    trigger = np.array([9.5, 10.5, 10.7, 9.4])
    put = np.array([False, True, False, True])
    fourier = heston.gap_prices(MARKET, np.array([10.0]), np.array([0.05]), 1.0, strike, trigger, put)[0]
    mc = heston.monte_carlo_gap_prices(MARKET, strike, trigger, put, n_paths=200_000, n_steps=200, seed=7)
    assert (np.abs(mc["price"] - fourier) < 3 * mc["standard_error"]).all()
    assert (np.abs(mc["price_cv"] - fourier) < 3 * mc["standard_error_cv"]).all()
    assert (np.abs(mc["bias"]) < mc["standard_error_cv"]).all()
    assert (mc["standard_error_cv"] < 0.6 * mc["standard_error"]).all()  # the sharper check


def test_heston_reference_along_the_paths(theta):
    small = get_family("hedging", n_paths=60, n_steps=10)
    reference = small.heston_reference(theta[:4])
    put = np.isin(theta[:4, 0], (1, 3))
    prices = heston.gap_prices(MARKET, np.array([10.0]), np.array([0.05]), 1.0, theta[:4, 1], theta[:4, 2], put)[0]
    assert np.allclose(reference[:, 0], prices)
    hedges = reference[:, 1:].reshape(4, 60, 10)
    eps = 1e-9
    assert (-eps <= hedges[0]).all() and (hedges[0] <= 1 + eps).all()  # call
    assert (-1 - eps <= hedges[1]).all() and (hedges[1] <= eps).all()  # put
    k = 7
    direct = heston.minimal_variance_hedges(MARKET, small.spot[:, k], small.variance[:, k], 1 - 0.1 * k,
                                            theta[:4, 1], theta[:4, 2], put).T
    assert np.allclose(hedges[:, :, k], direct)


def test_in_basis_price_is_close_to_heston(family):
    """500 paths and 10 basis functions: the in-basis price is within a few cents of Heston's."""
    theta = family.sample(40, np.random.default_rng(4), "ood")
    put = np.isin(theta[:, 0], (1, 3))
    prices = heston.gap_prices(MARKET, np.array([10.0]), np.array([0.05]), 1.0, theta[:, 1], theta[:, 2], put)[0]
    error = np.abs(10.0 * family.in_basis_optimum(theta)[:, 0] - prices)
    assert error.mean() < 0.02 and error.max() < 0.05


# ----- a GEO on the family ----------------------------------------------------------------------
def test_geo_smoke_run_and_solve_returns_price(tmp_path):
    small = {"steps": "60", "eval_every": "20", "checkpoint_every": "60", "n_instances": "40", "batch_size": "16",
             "depth": "3", "width": "24", "tensorboard": "false", "n_paths": "100", "n_steps": "20",
             "lr": "1e-3"}
    config = resolve_config(Hedging, "geo", small)
    assert config.training.test_law == "ood" and config.model_kwargs["init"] == "forward-backward"
    model, history = train_run(config, tmp_path)
    assert history[-1]["train_mse"] < 0.5 * history[0]["train_mse"]
    answer = solve_instances(model, [{"payoff": "gap_call", "strike": 9.6, "trigger": 10.4}])["instances"][0]
    assert answer["price"] == pytest.approx(10.0 * answer["coefficients"][0])
    assert answer["price"] == pytest.approx(answer["values"][0], rel=1e-6)
    assert 0 <= answer["coefficients"][0] <= 10 and answer["residual"] >= 0 and math.isfinite(answer["objective"])
    assert answer["params"]["trigger"] == 10.4 and len(answer["points"]) == 1 + 100 * 20
    family = model.family
    theta = torch.as_tensor(family.sample(8, np.random.default_rng(3), "ood"))
    with torch.no_grad():
        x = model.coefficients(theta.float()).double()
    gap = family.g(x, theta) - family.g(torch.as_tensor(family.in_basis_optimum(theta.numpy())), theta)
    assert (gap >= -1e-9).all()
    # --polish certifies hedging answers: status optimal, violation reported, the in-basis optimum reached
    instances = [family.instance_from_theta(row) for row in theta.numpy()]
    raw = solve_instances(model, instances)["instances"]
    polished = solve_instances(model, instances, polish_tol=1e-6)["instances"]
    optimum = family.in_basis_optimum(theta.numpy())
    for k, (before, after) in enumerate(zip(raw, polished)):
        assert before["status"] == "optimal_inaccurate" and before["residual"] > 1e-6  # a 60-step model
        assert after["status"] == "optimal" and after["residual"] <= 1e-6 and after["violation"] == 0
        assert after["gap"] is None and after["iterations"] >= 1
        assert np.abs(np.array(after["coefficients"]) - optimum[k]).max() < 1e-4
