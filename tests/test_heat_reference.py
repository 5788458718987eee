"""Checks of the heat-pde reference solvers (accurate splitting solver and multilevel Picard)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import solve_banded

from convexop.references.heat_equation import (
    BASE_SPACING,
    default_spacing,
    estimated_error,
    heat_closed_form,
    initial_condition,
    solve_heat_reaction,
)
from convexop.references.multilevel_picard import multilevel_picard_heat

POINTS = np.linspace(-5.0, 5.0, 500)


def _crank_nicolson(nu, xi=0.5, refine=4, steps=1000, half_width=8.0):
    """Independent solver: second-order finite differences in u on a grid containing POINTS
    (spacing BASE_SPACING / refine, zero Dirichlet at about +-half_width), Crank-Nicolson for
    the diffusion and second-order Adams-Bashforth for the reaction. Returns (500,)."""
    h = BASE_SPACING / refine
    pad = round((half_width - 5.0) / h)
    x = -5.0 + h * np.arange(-pad, 499 * refine + pad + 1)
    dt = 1.0 / steps
    r = 0.25 * nu * dt / h**2  # (dt / 2) * (nu / 2) / h^2
    n = x.size - 2
    bands = np.zeros((3, n))
    bands[0, 1:] = -r
    bands[1, :] = 1.0 + 2.0 * r
    bands[2, :-1] = -r
    y = initial_condition(x)[1:-1]
    q_old = xi * np.minimum(y, 0.0)
    for step in range(steps):
        q_now = xi * np.minimum(y, 0.0)
        reaction = q_now if step == 0 else 1.5 * q_now - 0.5 * q_old
        rhs = (1.0 - 2.0 * r) * y + dt * reaction
        rhs[1:] += r * y[:-1]
        rhs[:-1] += r * y[1:]
        q_old = q_now
        y = solve_banded((1, 1), bands, rhs)
    full = np.concatenate([[0.0], y, [0.0]])
    return full[pad + refine * np.arange(500)]


def test_initial_condition_and_closed_form_at_time_zero():
    u = np.array([-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(initial_condition(u), 5 * u * np.exp(-u * u), rtol=1e-15)
    np.testing.assert_allclose(heat_closed_form([0.3], u, horizon=0.0)[0], initial_condition(u))


@pytest.mark.parametrize("points", [POINTS, np.sort(np.random.default_rng(3).uniform(-6, 6, 41))])
def test_linear_case_matches_closed_form(points):
    nu = np.array([0.01, 0.07, 0.2, 0.4])
    exact = heat_closed_form(nu, points)
    for steps in (None, 37):
        got = solve_heat_reaction(nu, points, xi=0.0, steps=steps)
        assert got.shape == (4, points.size)
        assert np.abs(got - exact).max() <= 1e-8


def test_default_points_lie_on_grid_nodes():
    # trigonometric interpolation at points shifted by 1e-7 must agree with nodal values
    nu = np.array([0.02, 0.3])
    on = solve_heat_reaction(nu, POINTS, steps=40)
    off = solve_heat_reaction(nu, POINTS + 1e-7, steps=40)
    assert np.abs(on - off).max() < 2e-6
    ratio = BASE_SPACING / default_spacing(nu)
    assert np.all(np.isclose(ratio, np.rint(ratio)))


def test_self_convergence_under_refinement():
    nu = np.array([0.01, 0.05, 0.2, 0.4])
    err = estimated_error(nu)
    assert err.shape == (4,)
    assert np.all(err <= 1e-5), err
    assert np.all(err > 0.0)


def test_nonlinear_case_matches_crank_nicolson():
    nu = np.array([0.01, 0.4])
    ours = solve_heat_reaction(nu, POINTS)
    for row, value in zip(ours, nu):
        other = _crank_nicolson(value)
        assert np.abs(row - other).max() <= 1e-4
    # the reaction matters: far from the linear (xi = 0) solution on the negative side
    assert np.abs(ours - heat_closed_form(nu, POINTS)).max() > 0.5


def test_batched_equals_individual_and_sign_structure():
    nu = np.array([0.4, 0.011, 0.15, 0.011])
    together = solve_heat_reaction(nu, POINTS, steps=30)
    for i, value in enumerate(nu):
        alone = solve_heat_reaction([value], POINTS, steps=30)[0]
        np.testing.assert_allclose(together[i], alone, rtol=0, atol=1e-13)
    full = solve_heat_reaction(nu[:2], POINTS)
    assert np.all(full[:, POINTS < -0.5] < 0) and np.all(full[:, POINTS > 0.5] > 0)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        solve_heat_reaction([0.0], POINTS)
    with pytest.raises(ValueError):
        solve_heat_reaction([0.1], np.array([0.0, 20.0]))
    with pytest.raises(ValueError):
        multilevel_picard_heat(-0.1, POINTS, rng=np.random.default_rng(0))


def test_multilevel_picard_close_to_accurate_solver():
    nu = np.array([0.05, 0.3])
    accurate = solve_heat_reaction(nu, POINTS)
    linear = heat_closed_form(nu, POINTS)
    rng = np.random.default_rng(12345)
    for value, exact, lin in zip(nu, accurate, linear):
        mlp = multilevel_picard_heat(value, POINTS, rng=rng)
        assert mlp.shape == (500,)
        mse = np.mean((mlp - exact) ** 2)
        assert mse < 5e-3
        assert np.mean(mlp**2) > 0.3  # clearly not zero
        assert np.mean((mlp - lin) ** 2) > 10 * mse  # it sees the reaction term


def test_multilevel_picard_reproducible_and_linear_limit():
    a = multilevel_picard_heat(0.2, POINTS, levels=3, rng=np.random.default_rng(7))
    b = multilevel_picard_heat(0.2, POINTS, levels=3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    # xi = 0: a plain Monte Carlo mean of M^n = 3125 heat-kernel samples
    lin = multilevel_picard_heat(0.2, POINTS, xi=0.0, rng=np.random.default_rng(8))
    assert np.mean((lin - heat_closed_form([0.2], POINTS)[0]) ** 2) < 1e-3
