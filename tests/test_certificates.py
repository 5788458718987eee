import json

import numpy as np
import pytest
import torch

from convexop.cli import main
from convexop.errors import InputError
from convexop.families import get_family
from convexop.models.base import build_model, save_model
from convexop.prox import Box
from convexop.serving.polish import compare_with_cold_start
from convexop.serving.polish import polish_answers as polish
from convexop.solvers.fista import fista
from convexop.solvers.program import CompositeProgram
from convexop.training.config import resolve_config

TINY = ["--set", "steps=20", "--set", "eval_every=10", "--set", "n_instances=60", "--set", "depth=3",
        "--set", "width=5", "--set", "tensorboard=false"]




def _optimum(family, theta):
    return torch.tensor(family.in_basis_optimum(theta))


# ----- the certificate -------------------------------------------------------------------------

def test_residual_of_box_projection_problem_is_closed_form():
    # min 1/2 ||x - a||^2 over [-1, 1]^n: optimum clip(a); with t = 1 the residual is ||x - clip(a)||
    a = torch.tensor([[2.0, -0.3, 0.5], [-4.0, 0.1, 3.0]], dtype=torch.float64)
    program = CompositeProgram(lambda x: 0.5 * ((x - a) ** 2).sum(-1), Box(-1.0, 1.0),
                               lipschitz=torch.ones(2, dtype=torch.float64))
    optimum = a.clamp(-1, 1)
    assert program.residual(optimum).max() == 0
    x = torch.zeros_like(a)
    assert torch.allclose(program.residual(x), (x - optimum).norm(dim=-1))
    report = program.certificate(torch.full_like(a, 1.5))
    assert torch.allclose(report.violation, torch.full((2,), 0.5 * 3**0.5, dtype=torch.float64))
    assert torch.isinf(report.objective).all()  # outside the box
    assert report.gap is None and torch.equal(report.measure, torch.maximum(report.residual, report.violation))
    inside = program.certificate(x)
    assert (inside.objective > program.objective(optimum)).all() and (inside.violation == 0).all()
    assert not inside.certified(1e-6).any() and program.certificate(optimum).certified(0.0).all()


def test_residual_is_in_units_of_x_at_step_one_over_lipschitz():
    # min (L/2) ||x - a||^2 over [-1, 1]: at t = 1/L the forward-backward step lands on clip(a),
    # so the residual is ||x - clip(a)|| whatever L (units of x, not divided by the step)
    a = torch.tensor([[0.5, 3.0]], dtype=torch.float64)
    for lipschitz in (0.1, 1.0, 40.0):
        program = CompositeProgram(lambda x, L=lipschitz: 0.5 * L * ((x - a) ** 2).sum(-1), Box(-1.0, 1.0),
                                   lipschitz=torch.tensor([lipschitz], dtype=torch.float64))
        x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
        assert torch.allclose(program.residual(x), torch.tensor([(0.25 + 1.0) ** 0.5], dtype=torch.float64))


def test_smooth_program_residual_is_gradient_norm_over_lipschitz():
    matrix = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    program = CompositeProgram(lambda x: 0.5 * torch.einsum("bi,ij,bj->b", x, matrix, x),
                               lipschitz=torch.tensor([7.0], dtype=torch.float64))
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    assert torch.allclose(program.residual(x), (x @ matrix).norm(dim=-1) / 7.0)


@pytest.mark.parametrize("name", ["toy-box", "elliptic-pde"])
def test_certificate_zero_at_optimum_positive_elsewhere(name):
    family = get_family(name)
    theta = family.sample(40, np.random.default_rng(11))
    t = torch.tensor(theta)
    optimum = _optimum(family, theta)
    assert family.certificate(optimum, t).measure.max() <= 1e-8
    program = family.program(t)
    assert program.residual(optimum).max() <= 1e-8
    away = optimum + 0.05 * torch.randn(optimum.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    if name == "toy-box":
        away = away.clamp(-1, 1)  # feasible; a corner optimum pushed outwards is clamped back onto itself
    moved = (away - optimum).norm(dim=-1) > 1e-3
    assert moved.float().mean() > 0.7
    assert (family.certificate(away, t).measure[moved] > 1e-6).all()
    report = family.program(t[moved]).certificate(away[moved])
    best = program.objective(optimum)[moved]
    assert (report.objective > best).all() and (report.violation == 0).all() and report.gap is None


def test_supervised_family_has_no_certificate():
    family = get_family("heat-pde")
    theta = torch.tensor([[0.1]], dtype=torch.float64)
    assert family.program(theta) is None
    assert family.certificate(torch.zeros(1, family.rank, dtype=torch.float64), theta) is None
    with pytest.raises(InputError, match="not an exact convex program"):
        polish(family, torch.zeros(1, family.rank), theta, 1e-6)


# ----- polishing ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, tol", [("toy-box", 1e-9), ("elliptic-pde", 1e-10)])
def test_polish_reaches_tol_from_warm_and_cold_starts(name, tol):
    family = get_family(name)
    theta = family.sample(30, np.random.default_rng(12))
    t = torch.tensor(theta)
    optimum = _optimum(family, theta)
    warm = optimum + 0.01 * torch.randn(optimum.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for start in (warm, torch.zeros_like(optimum)):
        result = polish(family, start, t, tol)
        assert result.converged.all()
        assert (result.residual <= tol).all() and family.certificate(result.x, t).certified(tol).all()
        assert (result.x - optimum).abs().max() < 1e-5
    comparison = compare_with_cold_start(family, warm, t, tol)
    assert comparison["warm_converged"] == comparison["cold_converged"] == 1.0
    assert comparison["warm_mean"] < comparison["cold_mean"]


def test_polish_budget_exhaustion_is_not_converged():
    family = get_family("elliptic-pde")
    theta = torch.tensor(family.sample(5, np.random.default_rng(13)))
    start = torch.zeros(5, family.rank, dtype=torch.float64)
    for method in ("fista", "auto"):  # auto: elliptic-pde polishes by active-set Newton
        result = polish(family, start, theta, 1e-14, max_iterations=1, method=method)
        assert not result.converged.any()
        assert (result.residual > 1e-14).all() and (result.iterations == 1).all()
        assert torch.allclose(result.residual, family.certificate(result.x, theta).measure)
    newton = polish(family, start, theta, 1e-10, max_iterations=10)
    fista_steps = polish(family, start, theta, 1e-10, max_iterations=10, method="fista")
    assert newton.converged.all() and not fista_steps.converged.any()
    already = polish(family, _optimum(family, theta.numpy()), theta, 1e-8, max_iterations=1)
    assert already.converged.all() and (already.iterations == 0).all()
    with pytest.raises(InputError, match="--polish"):
        polish(family, start, theta, -1.0)
    with pytest.raises(InputError, match="--polish-iterations"):
        polish(family, start, theta, 1e-6, max_iterations=0)


def test_fista_backtracks_without_a_lipschitz_bound():
    # exp(x) is not globally L-smooth: the solver must backtrack from t = 1
    target = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=torch.float64)

    def build(index):
        return CompositeProgram(lambda x: (torch.exp(2 * x) - 2 * target[index] * x).sum(-1), Box(-5.0, 0.4),
                                select=build)

    result = fista(build(torch.arange(2)), torch.zeros(2, 2, dtype=torch.float64), 1e-10, 5000)
    expected = (0.5 * torch.log(target.clamp_min(1e-300))).where(target > 0, torch.full_like(target, -5.0))
    expected = expected.clamp(-5, 0.4)
    assert result.converged.all()
    assert torch.allclose(result.x, expected, atol=1e-8)


# ----- the command line -----------------------------------------------------------------------

def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_solve_polish_on_trained_toy_box(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert _run(["train", "toy-box", "--out", str(run_dir)] + TINY, capsys)[0] == 0
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [
        {"A": [[2, 0.5], [0.5, 1]], "b": [1, -3], "c": 0, "beta": [0, 0], "kappa": 1},
        {"A": [[1, 0], [0, 3]], "b": [0.2, 0.1], "c": 1, "beta": [0.5, -1], "kappa": 2}]}))
    plain, polished = tmp_path / "plain.json", tmp_path / "polished.json"
    assert _run(["solve", str(run_dir), "--instances", str(instances), "--out", str(plain)], capsys)[0] == 0
    code, out, _ = _run(["solve", str(run_dir), "--instances", str(instances), "--out", str(polished),
                         "--polish", "1e-9"], capsys)
    assert code == 0 and "2 optimal" in out
    before = json.loads(plain.read_text())["instances"]
    after = json.loads(polished.read_text())["instances"]
    family = get_family("toy-box")
    theta = family.theta_from_instances([a["params"] for a in after])
    optimum = family.in_basis_optimum(theta)
    for k, (b, a) in enumerate(zip(before, after)):
        assert b["status"] == "optimal_inaccurate" and b["residual"] > 1e-6  # a 20-step model is not optimal
        assert a["status"] == "optimal" and a["residual"] <= 1e-9 and a["iterations"] >= 1
        assert a["gap"] is None and set(a) >= {"objective", "residual", "gap", "violation", "status"}
        assert a["violation"] == 0 and np.abs(np.array(a["coefficients"]) - optimum[k]).max() < 1e-6
        assert a["values"] == a["coefficients"]  # identity basis
    # a budget too small: optimal_inaccurate, flagged on stderr, output still written
    code, _, err = _run(["solve", str(run_dir), "--instances", str(instances), "--out", str(polished),
                         "--polish", "1e-13", "--polish-iterations", "1"], capsys)
    assert code == 0 and "optimal_inaccurate" in err
    short = json.loads(polished.read_text())["instances"]
    # the second instance's g is not quadratic (beta != 0): one Newton round cannot reach 1e-13; the first's
    # is quadratic, so the closed-form Hessian may solve it exactly in that round; the status says which
    assert short[1]["status"] == "optimal_inaccurate" and short[1]["residual"] > 1e-13
    assert all((a["status"] == "optimal") == (max(a["residual"], a["violation"]) <= 1e-13) for a in short)
    # a loose certification tolerance certifies the raw answers, as documented
    code, out, _ = _run(["solve", str(run_dir), "--instances", str(instances), "--out", str(plain), "--tol", "10"],
                        capsys)
    assert code == 0 and {a["status"] for a in json.loads(plain.read_text())["instances"]} == {"optimal"}
    for argv, field in [(["--polish", "-1"], "--polish"), (["--polish", "nan"], "--polish"),
                        (["--polish", "1e-6", "--polish-iterations", "-2"], "--polish-iterations"),
                        (["--polish-iterations", "5"], "--polish-iterations"), (["--tol", "0"], "--tol")]:
        never = tmp_path / "never.json"
        code, _, err = _run(["solve", str(run_dir), "--instances", str(instances), "--out", str(never)] + argv, capsys)
        assert code == 2 and field in err and len(err.strip().splitlines()) == 1 and not never.exists()


def _saved_run(tmp_path, family_name, **model_kwargs):
    family = get_family(family_name)
    config = resolve_config(type(family), "geo", {})
    run_dir = tmp_path / family_name
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config.to_json()))
    torch.manual_seed(0)
    save_model(build_model("geo", family, **(config.model_kwargs | model_kwargs)), run_dir)
    return run_dir


def test_cli_solve_polish_elliptic_and_refuse_heat(tmp_path, capsys):
    run_dir = _saved_run(tmp_path, "elliptic-pde")  # forward-backward init, untrained
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [{"nu": 0.1, "a": 3.0, "c": -0.2},
                                                   {"nu": 0.02, "a": 5.0, "c": 0.7}]}))
    out = tmp_path / "out.json"
    code, _, _ = _run(["solve", str(run_dir), "--instances", str(instances), "--out", str(out), "--polish", "1e-9"],
                      capsys)
    assert code == 0
    answers = json.loads(out.read_text())["instances"]
    family = get_family("elliptic-pde")
    optimum = family.in_basis_optimum(np.array([[0.1, 3.0, -0.2], [0.02, 5.0, 0.7]]))
    for k, answer in enumerate(answers):
        assert answer["status"] == "optimal" and answer["residual"] <= 1e-9 and len(answer["values"]) == 500
        assert np.abs(np.array(answer["coefficients"]) - optimum[k]).max() < 1e-8
    heat_run = _saved_run(tmp_path, "heat-pde")
    heat_in = tmp_path / "heat.json"
    heat_in.write_text(json.dumps({"instances": [{"nu": 0.1}]}))
    never = tmp_path / "never.json"
    code, _, err = _run(["solve", str(heat_run), "--instances", str(heat_in), "--out", str(never), "--polish", "1e-6"],
                        capsys)
    assert code == 2 and "not an exact convex program" in err and len(err.strip().splitlines()) == 1
    assert not never.exists()
    code, _, _ = _run(["solve", str(heat_run), "--instances", str(heat_in), "--out", str(out)], capsys)
    answer = json.loads(out.read_text())["instances"][0]
    assert code == 0 and answer["residual"] is None and answer["violation"] is None
    assert answer["status"] == "approximate" and answer["objective"] is None and answer["gap"] is None
