"""The hand-written family of the README ("Write a family"): everything but its defining members is
derived (activation, certificate, polish, in-basis optimum, reference), and it matches CVXPY."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convexop.cli import main
from convexop.families import get_family

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "projection.py"


@pytest.fixture(scope="module")
def family():
    return get_family(f"{EXAMPLE}:family")


def test_derived_members_and_in_basis_optimum_match_cvxpy(family):
    cp = pytest.importorskip("cvxpy")
    q = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])
    theta = family.sample(8, np.random.default_rng(0))
    optimum = family.in_basis_optimum(theta)
    t = torch.as_tensor(theta)
    assert family.certificate(torch.as_tensor(optimum), t).measure.max() <= 1e-10
    assert np.allclose(family.reference(theta), optimum)  # identity basis: values are the coefficients
    z = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    assert torch.equal(family.activation(z), z.clamp_min(0))  # P prox_f E = the projection onto x >= 0
    assert torch.isinf(family.f_value(z)).all() and family.f_value(z.clamp_min(0)).item() == 0
    for k in range(3):
        y = cp.Variable(3)
        cp.Problem(cp.Minimize(0.5 * cp.quad_form(y - theta[k], q)), [y >= 0]).solve(solver=cp.CLARABEL)
        assert np.abs(y.value - optimum[k]).max() < 1e-6


def test_solve_polish_certifies_answers(family, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", f"{EXAMPLE}:family", "--out", str(run), "--set", "steps=60", "--set", "eval_every=30",
                 "--set", "n_instances=100", "--set", "tensorboard=false"]) == 0
    instances = tmp_path / "in.json"
    instances.write_text(json.dumps({"instances": [{"b": [0.5, -1.0, 2.0]}, {"b": [-0.3, 0.2, 0.1]}]}))
    out = tmp_path / "out.json"
    assert main(["solve", str(run), "--instances", str(instances), "--out", str(out), "--polish", "1e-9"]) == 0
    answers = json.loads(out.read_text())["instances"]
    optimum = family.in_basis_optimum(np.array([[0.5, -1.0, 2.0], [-0.3, 0.2, 0.1]]))
    for k, answer in enumerate(answers):
        assert answer["status"] == "optimal" and answer["residual"] <= 1e-9 and answer["violation"] == 0
        assert np.abs(np.array(answer["coefficients"]) - optimum[k]).max() < 1e-8
    capsys.readouterr()
