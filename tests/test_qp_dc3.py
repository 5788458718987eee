"""The built-in `qp-dc3` family: DC3's recipe, reference, certificate, polish, CLI."""

import json

import h5py
import numpy as np
import pytest
import torch

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import get_family
from convexop.families.qp_dc3 import dc3_problem
from convexop.serving.polish import polish_answers


@pytest.fixture(scope="module")
def family():
    return get_family("qp-dc3")


@pytest.fixture(scope="module")
def solved(family):
    theta = family.dc3_instances()[-6:]  # the last of DC3's test instances
    return theta, family.reference(theta)


def test_recipe_is_dc3s(family):
    problem = dc3_problem(17)
    assert problem["X"].shape == (10000, 50) and np.abs(problem["X"]).max() <= 1
    assert problem["Q"].min() > 0 and problem["Q"].max() < 1 and problem["p"].min() >= 0
    # h makes A^+ x feasible for every x in [-1, 1]^50 (checked on the worst vertex of each row)
    bound = np.abs(problem["G"] @ np.linalg.pinv(problem["A"])).sum(1)
    assert np.allclose(bound, problem["h"])
    assert family.rank == 100 and family.theta_size == 50
    assert family.labels[0] == "lambda_1" and family.labels[-1] == "mu_50"
    theta = family.sample(7, np.random.default_rng(0))
    assert theta.shape == (7, 50) and np.abs(theta).max() <= 1
    with pytest.raises(InputError, match="x"):
        family.theta_from_instances([{"x": [2.0] * 50}])
    with pytest.raises(InputError, match="coordinates"):
        get_family("qp-dc3", coordinates="weird")


def test_reference_matches_cvxpy(family, solved):
    cp = pytest.importorskip("cvxpy")
    theta, z = solved
    problem = dc3_problem(17)
    y_ours = family.primal(family.project(torch.as_tensor(z)), torch.as_tensor(theta))
    for k in range(3):
        y = cp.Variable(100)
        objective = 0.5 * cp.sum(cp.multiply(problem["Q"], cp.square(y))) + problem["p"] @ y
        constraints = [problem["A"] @ y == theta[k], problem["G"] @ y <= problem["h"]]
        cp.Problem(cp.Minimize(objective), constraints).solve(solver=cp.CLARABEL, tol_gap_abs=1e-12,
                                                               tol_gap_rel=1e-12, tol_feas=1e-12)
        assert np.abs(y.value - y_ours[k].numpy()).max() < 1e-6
        assert np.abs(constraints[1].dual_value - z[k, 50:]).max() < 1e-6
        assert np.abs(constraints[0].dual_value - z[k, :50]).max() < 1e-6
        assert abs(family.primal_objective(y_ours[k:k + 1]).item() - objective.value) < 1e-7


def test_coordinates_give_a_unit_lipschitz_decoupled_program(family):
    e, m = family.basis_values, family.factor_M[0]
    hessian = e.T @ m @ e
    assert abs(family.lipschitz_bound - 1) < 1e-9 and abs(torch.linalg.eigvalsh(hessian)[-1] - 1) < 1e-9
    theta3 = torch.as_tensor(family.dc3_instances()[:3])
    assert torch.allclose(family.lipschitz(theta3), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(family.program(theta3).lipschitz, torch.ones(3, dtype=torch.float64))
    assert hessian[:50, 50:].abs().max() < 1e-9
    assert torch.allclose(hessian[:50, :50], torch.eye(50, dtype=torch.float64))
    scaled = get_family("qp-dc3", coordinates="scaled")
    assert abs(scaled.lipschitz_bound - 1) < 1e-9
    c = torch.randn(4, 100, dtype=torch.float64)
    theta = torch.as_tensor(family.dc3_instances()[:4])
    inside = family.activation(c)
    z = family.multipliers(inside)
    assert (z[:, 50:] >= 0).all()  # the activation keeps mu >= 0 in these coordinates
    # the in-basis program minimises minus the dual value; family.objective is f + g
    program = family.program(theta)
    assert torch.allclose(program.smooth(inside), -family.dual(theta).dual_objective(z))
    assert torch.allclose(family.objective(inside, theta), program.smooth(inside))  # with g's constant
    assert torch.allclose(family.objective(inside, theta) - family.g(inside, theta),
                          family.dual(theta).factors["const"].expand(len(theta)))
    outside = inside.clone()
    outside[:, -1] = -1.0  # mu < 0: f = +inf
    assert torch.isinf(family.objective(outside, theta)).all()
    # g drops only a constant; in float32 its instance-dependent digits survive
    shift = family.g(inside, theta) - program.smooth(inside)
    assert torch.allclose(shift, -family.factor_const.expand(4), atol=1e-9)


def test_certificate_violation_and_polish(family, solved):
    theta_np, z = solved
    theta = torch.as_tensor(theta_np)
    optimum = family.project(torch.as_tensor(z))
    certificate = family.certificate(optimum, theta)
    assert certificate.gap.max() < 1e-9 and certificate.violation.max() < 1e-9
    assert torch.equal(certificate.measure, torch.maximum(certificate.gap, certificate.violation))
    # the certificate's objective is the primal objective of the recovered answer
    assert torch.allclose(certificate.objective, family.primal_objective(family.primal(optimum, theta)))
    noisy = family.activation(optimum + 0.3 * torch.randn(optimum.shape, generator=torch.Generator().manual_seed(0),
                                                          dtype=torch.float64))
    noisy_certificate = family.certificate(noisy, theta)
    assert (noisy_certificate.gap > 1e-4).all()
    assert noisy_certificate.violation.max() < 1e-10  # the recovered primal stays feasible
    result = polish_answers(family, noisy.float(), theta, 1e-8)
    assert bool(result.converged.all())
    assert result.residual.max() <= 1e-8 and family.certificate(result.x, theta).violation.max() <= 1e-8
    assert family.certificate(result.x, theta).measure.max() <= 1e-8
    assert torch.allclose(family.multipliers(result.x), torch.as_tensor(z), atol=1e-8)
    # the KKT polish's statistics travel with its result
    assert result.kkt_solves.shape == (len(theta),) and (result.kkt_solves >= 1).all()
    assert torch.equal(result.iterations, result.kkt_solves + result.fista_steps)
    assert result.first_guess.dtype == torch.bool and result.first_guess.shape == (len(theta),)
    same = family.program(theta).polish(family.finalise(noisy.float()), 1e-8, 10_000)
    assert torch.equal(same.kkt_solves, result.kkt_solves) and torch.equal(same.first_guess, result.first_guess)
    answer = family.extra_answers(result.x[:1], theta[:1])[0]
    assert len(answer["primal"]) == 100
    primal_objective = family.primal_objective(family.primal(optimum[:1], theta[:1])).item()
    assert abs(answer["primal_objective"] - primal_objective) < 1e-7


def test_error_is_the_change_of_the_recovered_primal(family, solved):
    theta_np, z = solved
    z = torch.as_tensor(z)
    delta = 1e-3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert family.error(z, z).max() == 0
    dual = family.dual(torch.as_tensor(theta_np))
    change = dual.recover(z + delta)[0] - dual.recover(z)[0]
    expected = (change ** 2).mean(-1) + (delta[:, :50] ** 2).mean(-1)
    assert torch.allclose(family.error(z + delta, z), expected)


def test_cli_generate_train_solve(tmp_path, capsys):
    data = tmp_path / "d.h5"
    assert main(["generate", "qp-dc3", "--n", "20", "--seed", "0", "--out", str(data)]) == 0
    family = get_family("qp-dc3")
    with h5py.File(data) as h5:
        params, targets = np.asarray(h5["params"]), np.asarray(h5["targets"])
    assert params.shape == (20, 50) and targets.shape == (20, 100)
    coefficients = family.project(torch.as_tensor(targets))
    assert family.certificate(coefficients, torch.as_tensor(params)).measure.max() < 1e-9
    run = tmp_path / "run"
    argv = ["train", "qp-dc3", "--out", str(run)] + [item for key in (
        "steps=2", "eval_every=1", "n_instances=30", "depth=2", "batch_size=8", "tensorboard=false")
        for item in ("--set", key)]
    assert main(argv) == 0
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [family.instance_from_theta(row) for row in params[:3]]}))
    out = tmp_path / "out.json"
    capsys.readouterr()
    assert main(["solve", str(run), "--instances", str(instances), "--out", str(out), "--polish", "1e-6"]) == 0
    answers = json.loads(out.read_text())["instances"]
    assert [a["status"] for a in answers] == ["optimal"] * 3
    for answer, target in zip(answers, targets):
        assert answer["gap"] <= 1e-6 and answer["violation"] <= 1e-6 and np.isfinite(answer["residual"])
        assert abs(answer["objective"] - answer["primal_objective"]) <= 1e-9 * max(1.0, abs(answer["objective"]))
        assert np.allclose(answer["values"], target, atol=1e-6)
        assert len(answer["primal"]) == 100 and np.isfinite(answer["primal_objective"])
