"""The operator-learning data sets: solvers against closed forms and refinement, fields, HDF5 files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from convexop import data as datasets
from convexop.families import get_family
from convexop.families.operator_learning import DATA_SEED
from convexop.references import operator_solvers as solvers
from convexop.references.random_fields import RBFField, burgers_eigenvalues, periodic_field

SENSORS = np.linspace(0.0, 1.0, 100)




def test_antiderivative_is_exact_for_a_cubic():
    family = get_family("antiderivative")
    x = family.sensors
    u = np.stack([1 + 2 * x - 3 * x**2 + 4 * x**3, np.cos(0.0 * x) * 2.5])
    s = family.reference(u)
    exact = np.stack([x + x**2 - x**3 + x**4, 2.5 * x])
    assert np.abs(s - exact).max() < 1e-12
    assert s.shape == (2, 100) and family.points.shape == (100,)


def test_antiderivative_of_the_field_matches_fine_quadrature():
    """The spline integral agrees with a fine trapezoid rule of the spline (independent check)."""
    from scipy.interpolate import CubicSpline

    u = RBFField(SENSORS, 0.2).sample(3, np.random.default_rng(4))
    s = solvers.antiderivative(u, SENSORS)
    fine = np.linspace(0, 1, 99 * 200 + 1)
    values = CubicSpline(SENSORS, u, axis=1)(fine)
    cumulative = np.concatenate([np.zeros((3, 1)), np.cumsum((values[:, 1:] + values[:, :-1]) / 2, axis=1)
                                 * (fine[1] - fine[0])], axis=1)
    assert np.abs(s - cumulative[:, ::200]).max() < 1e-7


def test_rbf_field_has_the_kernel_covariance():
    draws = RBFField(SENSORS, 0.2).sample(4000, np.random.default_rng(0))
    covariance = draws.T @ draws / len(draws)
    for lag in (0, 10, 20, 40):
        empirical = np.mean([covariance[i, i + lag] for i in range(100 - lag)])
        assert abs(empirical - math.exp(-0.5 * (lag / 99 / 0.2) ** 2)) < 0.06, lag


def test_burgers_field_has_the_stated_variance():
    draws = periodic_field(3000, 256, np.random.default_rng(0))
    expected = 2.0 * burgers_eigenvalues(127).sum()  # var u0(x) = sum_k 2 lambda_k (mean mode held at 0)
    assert abs(draws.var() / expected - 1.0) < 0.05
    assert np.abs(draws.mean(axis=1)).max() < 1e-12  # zero mean mode


def test_diffusion_reaction_closed_form_without_reaction():
    """k = 0, u = sin(pi x): s = sin(pi x) (1 - exp(-D pi^2 t)) / (D pi^2)."""
    u = np.sin(np.pi * SENSORS)[None]
    s = solvers.diffusion_reaction(u, SENSORS, reaction=0.0)[0]
    t = np.linspace(0, 1, 100)
    exact = np.sin(np.pi * SENSORS)[:, None] * (1 - np.exp(-0.01 * np.pi**2 * t))[None] / (0.01 * np.pi**2)
    assert np.abs(s - exact).max() < 1e-5


def test_diffusion_reaction_self_convergence():
    """Second order at the data points (the 100 x 100 grid): errors against a 793 x 793 solution
    fall ~4-5x per halving of h and dt (5x is the ideal ratio against a finite finest grid)."""
    u = RBFField(SENSORS, 0.2).sample(2, np.random.default_rng(DATA_SEED))
    finest = solvers.diffusion_reaction(u, SENSORS, nx=793, nt=793)[:, ::8, ::8]
    errors = []
    for n in (100, 199, 397):
        s = solvers.diffusion_reaction(u, SENSORS, nx=n, nt=n)
        step = (n - 1) // 99
        errors.append(np.abs(s[:, ::step, ::step] - finest).max())
    assert errors[0] < 2e-3
    assert errors[0] / errors[1] > 3.5 and errors[1] / errors[2] > 3.5, errors
    assert np.abs(finest).max() > 0.3  # a non-trivial solution


def test_diffusion_reaction_family_grid_and_strides():
    full, coarse = get_family("diffusion-reaction"), get_family("diffusion-reaction", stride=3)
    u = full.sample(2, np.random.default_rng(0))
    s = full.reference(u).reshape(2, 100, 100)
    assert full.points.shape == (10_000, 2) and np.allclose(full.points[101], [SENSORS[1], SENSORS[1]])
    assert np.abs(s[:, :, 0]).max() == 0 and np.abs(s[:, 0, :]).max() == 0 and np.abs(s[:, -1, :]).max() == 0
    assert np.abs(s).max() > 0.05
    assert np.allclose(coarse.reference(u).reshape(2, 34, 34), s[:, ::3, ::3], atol=1e-12)


def test_burgers_matches_cole_hopf():
    x = np.arange(256) / 256
    u0 = solvers.burgers_cole_hopf(x, 0.0, 0.1)[None]
    u1 = solvers.burgers(u0, 0.1, solver_resolution=256, steps=200)
    assert np.abs(u1[0] - solvers.burgers_cole_hopf(x, 1.0, 0.1)).max() < 1e-10


def test_burgers_self_convergence():
    u0 = periodic_field(3, 1024, np.random.default_rng(DATA_SEED))
    reference = solvers.burgers(u0, 0.1, 1024, steps=1600)
    errors = [np.abs(solvers.burgers(u0, 0.1, 1024, steps=s) - reference).max() for s in (50, 100, 200)]
    # ETDRK4 is fourth order on smooth non-stiff problems; here (stiff order reduction) ~2.5-3
    assert errors[0] / errors[1] > 3 and errors[1] / errors[2] > 3, errors
    assert errors[2] < 1e-8  # the data sets use 200 steps: error ~2e-7 relative to the RMS of u(., 1)
    coarse = solvers.burgers(u0[:, ::4], 0.1, 256, steps=200)  # spectral in space: 256 points suffice
    fine = solvers.burgers(u0, 0.1, 1024, steps=200)
    assert np.abs(coarse - fine[:, ::4]).max() < 1e-10


def test_burgers_resolutions_are_subsamples_of_one_data_set():
    sets = {r: datasets.generate(get_family("burgers", resolution=r), 3, seed=5) for r in (256, 1024)}
    assert np.abs(sets[1024].params[:, ::4] - sets[256].params).max() < 1e-12
    assert np.abs(sets[1024].targets[:, ::4] - sets[256].targets).max() < 1e-12
    assert np.allclose(sets[1024].points[::4], sets[256].points)


def test_datasets_are_deterministic_hdf5(tmp_path):
    family = get_family("antiderivative")
    paths = []
    for name, seed in (("a.h5", 1), ("b.h5", 1), ("c.h5", 2)):
        paths.append(tmp_path / name)
        datasets.write_dataset(paths[-1], datasets.generate(family, 20, seed))
    a, b, c = (datasets.read_dataset(p, family) for p in paths)
    assert a.attrs["sha256"] == b.attrs["sha256"] != c.attrs["sha256"]
    assert a.attrs["family"] == "antiderivative" and a.attrs["seed"] == 1 and "spline" in a.attrs["reference_method"]
    assert np.array_equal(a.params, b.params) and a.targets.shape == (20, 100)


def test_geo_refuses_operator_families():
    import torch

    from convexop.errors import InputError
    from convexop.models import build_model

    family = get_family("antiderivative")
    with pytest.raises(InputError, match="without convex structure"):
        family.g(torch.zeros(1, 100), torch.zeros(1, 100))
    with pytest.raises(InputError, match="without convex structure"):
        build_model("geo", family)
