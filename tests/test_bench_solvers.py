"""Solver benchmarks on the exact families: time to accuracy, CVXPY formulations, throughput, FLOPs."""

import math

import pytest
import torch

from convexop.bench.solvers import (
    cvxpy_problem,
    cvxpy_solve,
    instances,
    solve_to,
    time_to_accuracy_family,
)
from convexop.bench.throughput import (
    counted_flops,
    crossover,
    geo_flops,
    throughput_family,
)
from convexop.families import get_family
from convexop.families.hedging import CAPITAL_BOUND
from convexop.models import build_model


def _tiny_geo(name, **family_config):
    family = get_family(name, **family_config)
    model = build_model("geo", family, depth=3, width=2 * family.rank + 1, init="forward-backward",
                        step=0.2 if name == "toy-box" else None)
    model.eval()
    model.set_inference(start="zero")
    return model


@pytest.mark.parametrize("name, config", [("toy-box", {}), ("elliptic-pde", {"rank": 3}), ("hedging", {})])
def test_flop_count_matches_flop_counter(name, config):
    model = _tiny_geo(name, **config)
    parts = geo_flops(model)
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    theta = instances(model.family, 5, 0).float()
    assert counted_flops(lambda: model.coefficients(theta[:1])) == parts["total"]
    assert counted_flops(lambda: model.coefficients(theta)) == 5 * parts["total"]
    # the analytic part: A_l x and B_l q cost 2 R^2 and 2 R M per layer
    rank, width, depth = model.family.rank, model.width, model.depth
    assert parts["A x"] == depth * 2 * rank**2 and parts["B q"] == depth * 2 * rank * width


@pytest.mark.parametrize("name", ["toy-box", "hedging"])
def test_time_to_accuracy_reaches_each_tolerance(name):
    model = _tiny_geo(name)
    theta = instances(model.family, 12, 1)
    result = time_to_accuracy_family(model, theta, (1e-3, 1e-6), n_cvxpy=3)
    assert result["n"] == 12 and result["forward_seconds"] > 0
    for tol, entry in result["tolerances"].items():
        assert entry["warm_converged"] == 1.0 and entry["cold_converged"] == 1.0
        assert entry["warm_max_residual"] <= tol and entry["cold_max_residual"] <= tol
        assert entry["cold_iterations"] > 0 and entry["cvxpy_seconds"] > 0
        assert entry["cvxpy_reached"] == 1.0


def test_solve_to_polishes_elliptic_answers():
    family = get_family("elliptic-pde")
    theta = instances(family, 6, 2)
    start = torch.as_tensor(family.in_basis_optimum(theta.numpy())) + 0.05
    program = family.program(theta)
    # the certificate is ||grad F|| / L (units of x): 1e-7 / max L is the former ||grad F|| <= 1e-7
    tol = 1e-7 / float(program.lipschitz.max())
    result = solve_to(family, start, theta, tol)
    assert bool(result.converged.all()) and float(family.certificate(result.x, theta).measure.max()) <= tol
    assert float(program.value_and_gradient(result.x)[1].norm(dim=-1).max()) <= 1e-7


def test_hedging_program_is_the_family_program():
    """hedging's in-basis program (x_u and e computed once per instance) equals its g; its certificate
    is the projected-gradient residual at 1 / L and the distance to the capital box."""
    family = get_family("hedging")
    theta = instances(family, 7, 3)
    x = 0.3 * torch.randn(7, family.rank, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x[0, 0] = 12.0  # outside the capital box
    program = family.program(theta)
    assert torch.allclose(program.smooth(x), family.g(x, theta), rtol=1e-12, atol=1e-12)
    assert torch.allclose(program.lipschitz, torch.full((7,), family.lipschitz_bound, dtype=torch.float64))
    with torch.enable_grad():
        leaf = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(family.g(leaf, theta).sum(), leaf)
    point = x - gradient / family.lipschitz_bound
    point[:, 0] = point[:, 0].clamp(0.0, CAPITAL_BOUND)
    certificate = family.certificate(x, theta)
    assert torch.allclose(certificate.residual, (x - point).norm(dim=-1), rtol=1e-12, atol=1e-14)
    assert torch.allclose(certificate.violation, (x[:, 0] - x[:, 0].clamp(0.0, CAPITAL_BOUND)).abs())
    assert float(certificate.violation[0]) == 12.0 - CAPITAL_BOUND and torch.isinf(certificate.objective[0])
    # the closed-form Hessian 2Q is the Hessian of g
    step = 1e-3 * torch.randn(7, family.rank, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.enable_grad():
        moved = (x + step).requires_grad_(True)
        (moved_gradient,) = torch.autograd.grad(family.g(moved, theta).sum(), moved)
    expected = (program.hessian(x) @ step[..., None])[..., 0]
    assert torch.allclose(moved_gradient - gradient, expected, rtol=1e-8, atol=1e-10)
    optimum = torch.as_tensor(family.in_basis_optimum(theta.numpy()))
    assert float(family.certificate(optimum, theta).measure.max()) < 1e-8


@pytest.mark.parametrize("name", ["toy-box", "elliptic-pde", "hedging"])
def test_cvxpy_formulation_finds_the_in_basis_optimum(name):
    family = get_family(name)
    theta = instances(family, 3, 4)
    result = cvxpy_solve(family, theta)
    optimum = torch.as_tensor(family.in_basis_optimum(theta.numpy()))
    assert (result["x"] - optimum).abs().max() < 1e-5
    assert result["seconds"] >= 0.9 * result["solver_seconds"] > 0  # two clocks: the solver reports its own


def test_cvxpy_formulation_is_the_family_declared_one():
    family = get_family("heat-pde")  # supervised: declares no CVXPY form
    assert family.cvxpy_form() is None
    with pytest.raises(ValueError, match="heat-pde declares no CVXPY formulation"):
        cvxpy_problem(family)
    problem, x, _ = get_family("toy-box").cvxpy_form()
    assert problem.is_dpp() and x.shape == (2,)


def test_crossover_interpolates_in_log_log():
    tolerances = [1e-4, 1e-3, 1e-2, 1e-1]
    rates = [10.0, 100.0, 1000.0, 10000.0]
    assert math.isclose(crossover(tolerances, rates, 100.0), 1e-3)
    assert math.isclose(crossover(tolerances, rates, 10 ** 2.5), 10 ** -2.5)
    assert crossover(tolerances, rates, 5.0) == 0.0  # FISTA faster at every tolerance
    assert crossover(tolerances, rates, 1e5) == math.inf  # slower at every tolerance


def test_throughput_family_measures_every_batch():
    model = _tiny_geo("toy-box")
    result = throughput_family(model, n_cvxpy=3, batches=(1, 16), sweep=(1e-1, 1e-2))
    assert set(result["batches"]) == {1, 16}
    for entry in result["batches"].values():
        assert entry["geo"] > 0 and entry["fista"] > 0
    # the residual is in units of x (former residual / L, L <= 5 on these instances)
    assert result["cvxpy"]["rate"] > 0 and result["cvxpy"]["residual_max"] < 2e-6
    sweep = result["sweep"]
    assert sweep["batch"] == 16 and sweep["tolerances"][0] == 1e-1
    assert sweep["crossover"] == crossover(sweep["tolerances"], sweep["fista_rate"], sweep["geo_rate"])
