"""Unbounded instances of route (a) programs: the proof (a verified recession direction) against CVXPY's
status and closed forms, refused or dropped by generate, answered `unbounded` by solve and the CLI; bounded
instances, slowly converging ones included, are never called unbounded."""

import json

import numpy as np
import pytest
import torch

cp = pytest.importorskip("cvxpy")

from convexop import api, data, from_cvxpy
from convexop.cli import main
from convexop.errors import InputError
from convexop.models.base import build_model
from convexop.prox import L1, Box, ElasticNet, NonNegative, SeparableSum, Simplex
from convexop.solvers.fista import fista
from convexop.solvers.quadratic import QuadraticProgram
from convexop.solvers.unbounded import DESCENT_TOL, MATRIX_TOL, prove_unbounded

SMALL = ["--set", "steps=20", "--set", "eval_every=10", "--set", "n_instances=60", "--set", "depth=3",
         "--set", "width=12", "--set", "tensorboard=false"]

FAMILY_FILE = """
import cvxpy as cp
import numpy as np
import convexop

A = np.random.default_rng(0).normal(size=(4, 6))
A[:, 1] = -A[:, 0]  # A (e0 + e1) = 0: a null direction of A'A in the nonnegative orthant
x, b, c = cp.Variable(6, name="x", nonneg=True), cp.Parameter(4, name="b"), cp.Parameter(6, name="c")
problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b) + c @ x))

def sampler(n, rng):
    b, c = rng.normal(size=(n, 4)), rng.normal(size=(n, 6))
    return {"b": b, "c": c if SIGNED else np.abs(c)}  # c >= 0: bounded (the objective is >= 0 on x >= 0)

SIGNED = True
family = convexop.from_cvxpy(problem, sampler, name="nnls-plus-linear")
"""


def _nnls():
    """FAMILY_FILE's family built here: 0.5 ||A x - b||^2 + c'x over x >= 0, A with a null direction e0 + e1
    in the orthant, so that an instance is unbounded when c (and b) push along a recession direction."""
    a = np.random.default_rng(0).normal(size=(4, 6))
    a[:, 1] = -a[:, 0]
    x, b, c = cp.Variable(6, name="x", nonneg=True), cp.Parameter(4, name="b"), cp.Parameter(6, name="c")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(a @ x - b) + c @ x))
    sampler = lambda n, rng: {"b": rng.normal(size=(n, 4)), "c": rng.normal(size=(n, 6))}
    return from_cvxpy(problem, sampler, name="nnls-plus-linear"), a


def _cvxpy_unbounded(family, theta: np.ndarray) -> np.ndarray:
    return np.array([status == "unbounded" for status in family.cvxpy_statuses(theta)])


def test_the_proof_agrees_with_cvxpy_and_its_directions_verify():
    family, a = _nnls()
    theta = family.sample(24, np.random.default_rng(1))
    expected = _cvxpy_unbounded(family, theta)
    assert 4 <= expected.sum() <= 20  # both kinds drawn
    np.testing.assert_array_equal(family.unbounded(theta), expected)
    p, q, _, _ = family._quadratic(torch.as_tensor(theta))
    proof = prove_unbounded(p, q, NonNegative())
    d = proof.direction[proof.unbounded].numpy()
    assert (d >= 0).all() and np.abs(d @ a.T).max() <= 1e-8 * np.linalg.norm(d, axis=1).max()
    assert ((q[proof.unbounded].numpy() * d).sum(1) < 0).all()
    assert float(proof.matrix_ratio[proof.unbounded].max()) <= MATRIX_TOL
    assert float(proof.descent_ratio[proof.unbounded].max()) <= -DESCENT_TOL


def test_linear_objectives_over_every_supported_piece_match_the_closed_form():
    # P = 0: unbounded iff some coordinate can move for free against q: x >= 0 with q_i < 0, x <= 2 with
    # q_i > 0, an L1 coordinate with |q_i| > w; a simplex or a two-sided box never
    h = SeparableSum([(2, NonNegative()), (2, L1(0.5)), (3, Simplex(1.0)), (2, Box([-np.inf, -1.0], [2.0, 1.0]))])
    q = torch.as_tensor(np.random.default_rng(0).normal(size=(200, 9)))
    expected = (q[:, :2] < 0).any(1) | (q[:, 2:4].abs() > 0.5).any(1) | (q[:, 7] > 0)
    proof = prove_unbounded(torch.zeros(1, 9, 9, dtype=torch.float64), q, h)
    assert 0 < int(expected.sum()) < 200
    assert torch.equal(proof.unbounded, expected)
    assert prove_unbounded(torch.zeros(1, 2, 2, dtype=torch.float64), q[:, :2], ElasticNet(1.0, 0.0)) is None


def test_a_slowly_converging_bounded_instance_is_not_called_unbounded():
    # min 0.5 (x0^2 + 1e-8 x1^2) + q'x over x >= 0: for q1 < 0 the minimiser x1 = -q1 / 1e-8 is far and
    # FISTA crawls towards it, but it exists; the same instance with a zero curvature is unbounded
    p = torch.tensor([[[1.0, 0.0], [0.0, 1e-8]], [[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    q = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    slow = fista(QuadraticProgram(p[:1], q[:1], torch.zeros(1, dtype=torch.float64), NonNegative()),
                 torch.zeros(1, 2, dtype=torch.float64), 1e-8, 2000)
    assert not bool(slow.converged[0])
    assert prove_unbounded(p, q, NonNegative()).unbounded.tolist() == [False, True]
    x = cp.Variable(2, nonneg=True)
    status = cp.Problem(cp.Minimize(0.5 * (x[0] ** 2 + 1e-8 * x[1] ** 2) - x[0] - x[1])).solve(solver="CLARABEL")
    assert np.isclose(status, -0.5 - 0.5e8, rtol=1e-6)  # bounded: its optimal value


def test_generate_refuses_unbounded_draws_in_one_line_and_drops_exactly_them():
    family, _ = _nnls()
    drawn = family.sample(12, np.random.default_rng(2))
    expected = _cvxpy_unbounded(family, drawn)
    first = int(np.flatnonzero(expected)[0])
    with pytest.raises(InputError, match=rf"{int(expected.sum())} of 12 instances are unbounded below "
                                         rf"\(first: instance {first},.*--drop-infeasible") as caught:
        data.generate(family, 12, 2)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match=rf"{int(expected.sum())} of 12 instances of nnls-plus-linear are "
                                         rf"unbounded below \(first: instance {first},"):
        family.reference(drawn)  # the reference itself, before any solve
    kept = data.generate(family, 12, 2, drop_infeasible=True)
    np.testing.assert_array_equal(kept.params, drawn[~expected])
    assert kept.attrs["dropped_unbounded"] == int(expected.sum()) and kept.attrs["dropped_infeasible"] == 0
    assert np.isfinite(kept.targets).all()


def test_solve_answers_unbounded_exactly_where_cvxpy_does_and_polishes_the_rest():
    family, _ = _nnls()
    theta = family.sample(10, np.random.default_rng(3))
    expected = _cvxpy_unbounded(family, theta)
    assert 0 < expected.sum() < 10
    torch.manual_seed(0)
    model = build_model("geo", family, depth=2, width=4)
    instances = family.instances_from_theta(theta)
    raw = api.solve(model, instances)["instances"]
    polished = api.solve(model, instances, polish=1e-8)["instances"]
    json.dumps(polished, allow_nan=False)
    for answers in (raw, polished):
        assert [a["status"] == "unbounded" for a in answers] == expected.tolist()
        for answer in (a for a in answers if a["status"] == "unbounded"):
            assert answer["values"] is None and answer["coefficients"] is None and "variables" not in answer
            assert "unbounded below" in answer["reason"]
    assert all(a["status"] == "optimal" and a["residual"] <= 1e-8 for a, bad in zip(polished, expected) if not bad)
    assert all(a["iterations"] == 0 for a, bad in zip(polished, expected) if bad)  # not polished
    ours = np.array([a["variables"]["x"] for a, bad in zip(polished, expected) if not bad])
    assert np.abs(ours - family.reference(theta[~expected])).max() < 1e-6


def test_cli_generate_refuses_and_drops_and_solve_writes_unbounded(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fam.py").write_text(FAMILY_FILE)
    assert main(["generate", "fam.py:family", "--n", "8", "--seed", "4", "--out", "d.h5"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar: one line
    assert "instances are unbounded below (first: instance" in error and not (tmp_path / "d.h5").exists()
    assert main(["generate", "fam.py:family", "--n", "8", "--seed", "4", "--out", "d.h5", "--drop-infeasible"]) == 0
    kept = data.read_dataset(tmp_path / "d.h5")
    assert len(kept.params) + int(kept.attrs["dropped_unbounded"]) == 8 and int(kept.attrs["dropped_unbounded"]) > 0

    (tmp_path / "bounded.py").write_text(FAMILY_FILE.replace("SIGNED = True", "SIGNED = False"))
    assert main(["train", "bounded.py:family", "--out", "run"] + SMALL) == 0
    family, _ = _nnls()
    b = [0.5, -0.2, 0.1, 0.3]
    down = [-1.0, -1.0, 0.5, 0.5, 0.5, 0.5]  # c'(e0 + e1) < 0 along the null direction: unbounded
    (tmp_path / "in.json").write_text(json.dumps({"instances": [{"b": b, "c": [0.5] * 6}, {"b": b, "c": down}]}))
    assert _cvxpy_unbounded(family, family.theta_from_instances(json.loads((tmp_path / "in.json").read_text())
                                                                ["instances"])).tolist() == [False, True]
    capsys.readouterr()
    assert main(["solve", "run", "--instances", "in.json", "--out", "out.json", "--polish", "1e-8"]) == 0
    answers = json.loads((tmp_path / "out.json").read_text())["instances"]
    assert [a["status"] for a in answers] == ["optimal", "unbounded"]
    assert answers[1]["values"] is None and answers[1]["reason"]
    assert "unbounded" in capsys.readouterr().out


def test_objectives_without_a_proof_fall_back_on_cvxpys_status():
    x, c = cp.Variable(3, name="x"), cp.Parameter(3, name="c")
    family = from_cvxpy(cp.Problem(cp.Minimize(cp.sum(cp.exp(x)) + c @ x)),
                        lambda n, rng: {"c": -rng.uniform(0.5, 2.0, (n, 3))}, name="exponential")
    theta = np.array([[-1.0, -1.0, -1.0], [-1.0, 0.5, -1.0]])  # c_1 > 0: x_1 -> -inf lowers it without end
    assert not family.unbounded(theta).any()  # not quadratic: no proof
    assert family.unbounded_by_cross_check(theta).tolist() == [False, True]
