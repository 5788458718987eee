"""Feasibility of route (b) answers without a user `interior`: the phase-I solve against closed forms,
restored answers feasible with an honest gap, infeasible instances answered `infeasible` (solve) and
refused or dropped (generate)."""

import json

import numpy as np
import pytest
import torch

cp = pytest.importorskip("cvxpy")

from convexop import data, from_cvxpy
from convexop.errors import InputError
from convexop.models.base import build_model
from convexop.serving.solve import solve_instances
from convexop.solvers.interior_point import phase_one, solve_qp
from convexop.solvers.qp import QPData


def _box(lower: float, upper: float, n: int = 3) -> QPData:
    """lower <= y_i <= upper as a QP's constraints (objective irrelevant to phase I)."""
    eye = torch.eye(n, dtype=torch.float64)[None]
    return QPData(eye, torch.zeros(1, n, dtype=torch.float64), torch.zeros(1, 0, n, dtype=torch.float64),
                  torch.zeros(1, 0, dtype=torch.float64), torch.cat([eye, -eye], 1),
                  torch.tensor([[upper] * n + [-lower] * n], dtype=torch.float64))


def test_phase_one_finds_the_largest_margin_of_a_box_and_proves_an_empty_one():
    point, margin = phase_one(_box(0.0, 1.0))
    assert abs(float(margin[0]) - 0.5) < 1e-4 and torch.allclose(point, torch.full_like(point, 0.5), atol=1e-4)
    _, margin = phase_one(_box(1.0, 0.0))  # y <= 0 and y >= 1: the best margin is -1/2
    assert abs(float(margin[0]) + 0.5) < 1e-4
    # an equality outside the box: y_0 + y_1 + y_2 = 5 with 0 <= y <= 1
    box = _box(0.0, 1.0)
    box.A, box.b = torch.ones(1, 1, 3, dtype=torch.float64), torch.tensor([[5.0]], dtype=torch.float64)
    assert float(phase_one(box)[1][0]) < -1e-3


def _dispatch(generators: int = 6, seed: int = 3):
    rng = np.random.default_rng(seed)
    quadratic, upper = rng.uniform(0.5, 2.0, generators), rng.uniform(1.0, 3.0, generators)
    p, demand, cost = cp.Variable(generators, name="p"), cp.Parameter(name="demand"), cp.Parameter(generators,
                                                                                                   name="cost")
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(quadratic, cp.square(p))) / 2 + cost @ p),
                         [cp.sum(p) == demand, p >= 0, p <= upper])
    sampler = lambda n, r: {"demand": r.uniform(0.2, 0.8, n) * upper.sum(),
                            "cost": r.uniform(0.5, 2.0, (n, generators))}
    return from_cvxpy(problem, sampler, name="dispatch"), upper


def test_restored_answers_are_feasible_and_their_gap_bounds_the_true_suboptimality():
    family, _ = _dispatch()
    theta = torch.as_tensor(family.sample(64, np.random.default_rng(0)))
    dual, constant = family.qp(theta)
    y_star, z_star = solve_qp(dual.data, 1e-10)
    optimum = family.sign * (dual.primal_objective(y_star) + constant)
    torch.manual_seed(1)
    x = z_star @ family.inverse.T
    x = family.finalise(x + 0.3 * x.abs().mean() * torch.randn_like(x))  # poor multipliers (mu >= 0 kept)
    raw = dual.recover(family.multipliers(x))[0]
    assert float(dual.primal_violation(raw).max()) > 1e-2
    certificate = family.certificate(x, theta)
    assert float(certificate.violation.max()) < 1e-9  # every answer restored into the feasible set
    assert not certificate.infeasible.any()
    suboptimality = (certificate.objective - optimum) / certificate.objective.abs().clamp_min(1.0)
    assert float(suboptimality.min()) > -1e-9  # feasible answers cannot beat the optimum
    assert bool((suboptimality <= certificate.gap + 1e-9).all())  # the gap is an upper bound


def test_solve_answers_infeasible_instances_with_null_values_and_generate_refuses_or_drops_them():
    family, upper = _dispatch()
    torch.manual_seed(0)
    model = build_model("geo", family, depth=2, width=4)
    good = family.instance_from_theta(family.sample(1, np.random.default_rng(0))[0])
    bad = good | {"demand": 1.5 * float(upper.sum())}  # above total capacity
    answers = solve_instances(model, [good, bad, good])["instances"]
    json.dumps(answers, allow_nan=False)
    assert [a["status"] for a in answers][1] == "infeasible"
    assert answers[1]["values"] is None and answers[1]["coefficients"] is None and "variables" not in answers[1]
    assert answers[0]["status"] in ("optimal", "optimal_inaccurate") and answers[0]["violation"] < 1e-9
    polished = solve_instances(model, [good, bad], polish_tol=1e-6, polish_iterations=50)["instances"]
    assert [a["status"] for a in polished] == ["optimal", "infeasible"]

    def sampler(n, rng):
        draw = {"demand": rng.uniform(0.2, 0.8, n) * upper.sum(), "cost": rng.uniform(0.5, 2.0, (n, len(upper)))}
        draw["demand"][::4] = 2.0 * upper.sum()  # every fourth instance infeasible
        return draw

    family._sampler = sampler
    with pytest.raises(InputError, match=r"3 of 10 instances are infeasible \(first: instance 0.*--drop-infeasible"):
        data.generate(family, 10, 0)
    kept = data.generate(family, 10, 0, drop_infeasible=True)
    assert len(kept.params) == 7 and kept.attrs["dropped_infeasible"] == 3
    assert float(kept.params[:, 0].max()) < upper.sum()


def test_generate_command_refuses_infeasible_draws_in_one_line_and_drops_them_when_asked(tmp_path, capsys):
    from convexop.cli import main

    family_file = tmp_path / "dispatch.py"
    family_file.write_text(
        "import cvxpy as cp\nimport numpy as np\nimport convexop\n"
        "p, d = cp.Variable(3, name='p'), cp.Parameter(name='demand')\n"
        "problem = cp.Problem(cp.Minimize(cp.sum_squares(p)), [cp.sum(p) == d, p >= 0, p <= 1])\n"
        "def sampler(n, rng):\n    d = rng.uniform(0.5, 2.5, n)\n    d[::3] = 5.0  # above capacity 3\n"
        "    return {'demand': d}\n"
        "family = convexop.from_cvxpy(problem, sampler, name='tiny-dispatch')\n")
    out = tmp_path / "data.h5"
    assert main(["generate", f"{family_file}:family", "--n", "6", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar: one line
    assert "2 of 6 instances are infeasible (first: instance 0" in error and not out.exists()
    assert main(["generate", f"{family_file}:family", "--n", "6", "--out", str(out), "--drop-infeasible"]) == 0
    kept = data.read_dataset(out)
    assert len(kept.params) == 4 and int(kept.attrs["dropped_infeasible"]) == 2
