"""The QP dual machinery: dual route, certificates, active-set polish, batched reference."""

import numpy as np
import pytest
import torch

from convexop.solvers.interior_point import interior_point, solve_qp
from convexop.solvers.qp import QPData, QPDual, relative_gap
from convexop.solvers.qp_program import QPDualProgram


def random_qp(batch: int, n: int = 8, me: int = 3, mi: int = 6, seed: int = 0) -> QPData:
    """Random strongly convex QPs, feasible by construction (b, h from a random point plus slack)."""
    rng = np.random.default_rng(seed)
    root = rng.standard_normal((batch, n, n))
    p = root @ root.transpose(0, 2, 1) + 0.5 * np.eye(n)
    a = rng.standard_normal((batch, me, n))
    g = rng.standard_normal((batch, mi, n))
    point = rng.standard_normal((batch, n))
    b = np.einsum("bij,bj->bi", a, point)
    h = np.einsum("bij,bj->bi", g, point) + rng.uniform(0, 1, (batch, mi))
    q = 3 * rng.standard_normal((batch, n))  # pushes the optimum onto some of the inequalities
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)
    return QPData(t(p), t(q), t(a), t(b), t(g), t(h))


def cvxpy_solution(data: QPData, k: int):
    cp = pytest.importorskip("cvxpy")
    d = {name: getattr(data, name)[k].numpy() for name in ("P", "q", "A", "b", "G", "h")}
    y = cp.Variable(data.n)
    constraints = [d["A"] @ y == d["b"], d["G"] @ y <= d["h"]]
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(y, cp.psd_wrap(d["P"])) + d["q"] @ y), constraints)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return y.value, np.concatenate([constraints[0].dual_value, constraints[1].dual_value]), problem.value


def test_dual_route_recovers_the_primal_optimum_exactly():
    data = random_qp(6, seed=1)
    y, z = solve_qp(data)
    dual = QPDual(data)
    for k in range(len(z)):
        y_ref, z_ref, value = cvxpy_solution(data, k)
        assert np.abs(y[k].numpy() - y_ref).max() < 1e-6
        assert np.abs(z[k].numpy() - z_ref).max() < 1e-6
        assert abs(dual.primal_objective(y)[k].item() - value) < 1e-7 * max(1, abs(value))
    # closed-form recovery from the exact dual optimum: y(z*) = -P^-1 (q + K'z*) is the primal optimum
    assert (dual.primal(z) - y).abs().max() < 1e-8
    assert dual.primal_violation(dual.primal(z)).max() < 1e-8
    assert (dual.recover(z)[0] - y).abs().max() < 1e-8
    assert (z[:, data.me:] >= 0).all()
    assert (torch.stack(dual.certificate(z)).amax(0) <= 1e-9).all()


def test_duality_gap_zero_at_optimum_positive_at_feasible_points():
    data = random_qp(20, seed=2)
    y, z = solve_qp(data)
    dual = QPDual(data)
    assert dual.duality_gap(z).abs().max() < 1e-9
    assert dual.certificate(z)[0].max() < 1e-9
    generator = torch.Generator().manual_seed(0)
    other = z + 0.3 * torch.randn(z.shape, generator=generator, dtype=torch.float64)
    other[:, data.me:] = other[:, data.me:].clamp_min(0)
    feasible = _feasible_point(data)
    y_other, z_other = dual.recover(other, feasible)
    assert dual.primal_violation(y_other).max() < 1e-10  # the ratio test makes the answer feasible
    gap = dual.primal_objective(y_other) - dual.dual_objective(z_other)
    assert (gap > 1e-6).all()  # weak duality, strictly away from the optimum
    assert (dual.primal_objective(y_other) - dual.primal_objective(y) <= gap + 1e-9).all()  # bounds suboptimality


def _feasible_point(data: QPData) -> torch.Tensor:
    """A strictly feasible point: the minimum-norm point of the constraints with h lowered by 1e-3."""
    shrunk = QPData(torch.eye(data.n, dtype=torch.float64)[None], torch.zeros(1, data.n, dtype=torch.float64),
                    data.A, data.b, data.G, data.h - 1e-3)
    return solve_qp(shrunk)[0]


def test_relative_gap_scale():
    gap = relative_gap(torch.tensor([2.0, 2.0]), torch.tensor([0.5, -100.0]))
    assert torch.allclose(gap, torch.tensor([2.0, 0.02]))


def test_polish_accepts_the_true_active_set_and_recovers_from_a_wrong_one():
    data = random_qp(30, seed=3)
    _, z = solve_qp(data)
    keep = (z[:, data.me:] > 1e-9).any(1).nonzero()[:, 0]  # instances with an active inequality
    assert len(keep) >= 20
    data, z = data.index(keep), z[keep]
    dual = QPDual(data)
    truth = z[:, data.me:] > 1e-9
    start = z + 0.05 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    right = dual.polish(start, 1e-9, 100, active=truth)
    assert right.converged.all() and right.first_guess.all() and (right.kkt_solves == 1).all()
    assert (right.x - z).abs().max() < 1e-8
    wrong = truth.clone()
    strongest = z[:, data.me:].argmax(1)
    wrong[torch.arange(len(z)), strongest] = False  # drop the most strongly active constraint
    fixed = dual.polish(start, 1e-9, 100, active=wrong)
    assert fixed.converged.all() and not fixed.first_guess.any()
    assert (fixed.kkt_solves >= 2).all() and (fixed.iterations == fixed.kkt_solves + fixed.fista_steps).all()
    assert (fixed.x - z).abs().max() < 1e-8
    # no guess at all: the active-set rounds, then FISTA, still certify
    cold = dual.polish(torch.zeros_like(z), 1e-7, 5000, active=torch.zeros_like(truth), rounds=1, fista_chunk=50)
    assert cold.converged.all() and (cold.fista_steps > 0).any()


def test_polish_finishes_answers_certified_before_any_solve_on_their_active_set():
    data = random_qp(30, seed=5)
    y, z = solve_qp(data)
    dual = QPDual(data)
    near = z + 1e-4 * torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    near[:, data.me:] = torch.where(z[:, data.me:] > 1e-9, near[:, data.me:], 0.0)  # the true active set
    gap, violation = dual.certificate(near)
    tol = float(torch.maximum(gap, violation).max()) * 1.01  # every start is certified at tol already
    kept = dual.polish(near, tol, 100, finish=False)
    assert (kept.kkt_solves == 0).all() and (dual.recover(kept.x)[0] - y).abs().max() > 1e-6
    finished = dual.polish(near, tol, 100)
    assert finished.converged.all() and (finished.kkt_solves == 1).all()
    assert (dual.recover(finished.x)[0] - y).abs().max() < 1e-9  # the KKT point: exact to rounding


def test_shared_data_broadcasts_and_program_matches_the_closed_form():
    data = random_qp(1, seed=4)
    many = QPData(data.P, data.q, data.A, data.b.expand(5, -1) + 0.01 * torch.arange(5.0)[:, None].double(),
                  data.G, data.h)
    many.check()
    dual = QPDual(many)
    z = torch.rand(5, data.me + data.mi, dtype=torch.float64)
    program = dual.program()
    value, gradient = program.value_and_gradient(z)
    assert torch.allclose(value, dual.smooth(z))
    r = data.q + z @ torch.cat([data.A, data.G], 1)[0]
    expected = (0.5 * (r * torch.linalg.solve(data.P[0], r.T).T).sum(-1)
                + (z * torch.cat([many.b, many.h.expand(5, -1)], 1)).sum(-1))
    assert torch.allclose(value, expected)
    assert torch.allclose(dual.smooth(z[:, None].expand(5, 3, -1)), value[:, None].expand(5, 3))
    assert torch.allclose(gradient[:, :data.me], many.b - dual.primal(z) @ data.A[0].T)  # dual gradient = -residual
    lipschitz = torch.linalg.eigvalsh(dual.factors["M"][0])[-1]
    assert torch.allclose(program.lipschitz, lipschitz.expand(5))


def test_dual_program_certificate_is_the_qp_pair_and_polishes():
    data = random_qp(8, seed=7)
    _, z_star = solve_qp(data)
    dual = QPDual(data)
    program = dual.program()
    assert isinstance(program, QPDualProgram)
    noisy = z_star + 0.1 * torch.randn(z_star.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    noisy[:, data.me:] = noisy[:, data.me:].clamp_min(0)
    gap, violation = dual.certificate(noisy)
    certificate = program.certificate(noisy)
    assert torch.equal(certificate.gap, gap) and torch.equal(certificate.violation, violation)
    assert torch.equal(certificate.measure, torch.maximum(gap, violation))
    assert torch.equal(program.measure(noisy), certificate.measure)
    assert torch.allclose(certificate.objective, dual.primal_objective(dual.recover(noisy)[0]))
    assert (certificate.measure > 1e-4).all() and not certificate.certified(1e-4).any()
    # the residual is the dual program's prox-gradient residual at t = 1 / L (units of z): 0 only at z*
    step = 1 / program.lipschitz[:, None]
    _, gradient = program.value_and_gradient(noisy)
    point = noisy - step * gradient
    point[:, data.me:] = point[:, data.me:].clamp_min(0)  # prox of the indicator of mu >= 0
    assert torch.allclose(certificate.residual, (noisy - point).norm(dim=-1))
    assert (program.certificate(z_star).residual < 1e-8).all() and program.certificate(z_star).certified(1e-9).all()
    # its polish is the active-set KKT polish, certified on the program's own measure
    result = program.polish(noisy, 1e-9, 100)
    assert result.converged.all() and (result.residual <= 1e-9).all() and (program.measure(result.x) <= 1e-9).all()
    assert (result.x - z_star).abs().max() < 1e-8 and (result.kkt_solves >= 1).all()
    # subsets keep the factorisations and certify the same rows
    sub = program.subset(torch.tensor([1, 5]))
    assert torch.equal(sub.measure(noisy[[1, 5]]), certificate.measure[[1, 5]])


def test_check_and_degenerate_shapes():
    data = random_qp(2, seed=5)
    with pytest.raises(ValueError, match="positive definite"):
        QPData(-data.P, data.q, data.A, data.b, data.G, data.h).check()
    with pytest.raises(ValueError, match="q must have shape"):
        QPData(data.P, data.q[:, :3], data.A, data.b, data.G, data.h).check()
    for me, mi in ((0, 4), (3, 0)):
        part = random_qp(3, me=me, mi=mi, seed=6)
        _y, z = solve_qp(part)
        dual = QPDual(part)
        assert z.shape == (3, me + mi)
        assert (torch.stack(dual.certificate(z)).amax(0) <= 1e-9).all()
        _, _, iterations = interior_point(part)
        assert (iterations > 0).all()
