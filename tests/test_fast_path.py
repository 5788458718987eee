"""The documented solve path's batched pieces give exactly what the per-instance code gives: instance
validation (with the same one-line refusal naming the first bad index), the echoed parameters, and the
QP certificate computed from one primal recovery."""

import numpy as np
import pytest
import torch

from convexop.errors import InputError
from convexop.families import get_family
from convexop.solvers.program import CompositeProgram

cp = pytest.importorskip("cvxpy")


def test_batched_instance_validation_matches_the_per_instance_path():
    family = get_family("elliptic-pde")
    theta = family.sample(50, np.random.default_rng(0))
    instances = family.instances_from_theta(theta)
    assert instances == [family.instance_from_theta(row) for row in theta]
    assert family._theta_batched(instances) is not None
    assert np.array_equal(family.theta_from_instances(instances), theta)
    bad = [dict(instance) for instance in instances]
    bad[37]["nu"] = -1.0  # outside the domain: the batched path declines, the walk names index 37
    assert family._theta_batched(bad) is None
    with pytest.raises(InputError, match=r"instances\[37\]\.nu"):
        family.theta_from_instances(bad)
    bad[37]["nu"] = instances[37]["nu"]
    bad[12] = {**bad[12], "extra": 1.0}
    with pytest.raises(InputError, match=r"instances\[12\]\.extra"):
        family.theta_from_instances(bad)


def test_families_with_their_own_instance_checks_keep_them():
    family = get_family("toy-box")  # validates A's symmetry itself: the batched path must not skip it
    assert family._theta_batched([{"A": [[1, 2], [0, 1]], "b": [0, 0], "c": 0, "beta": [0, 0], "kappa": 1}]) is None


def test_qp_certificate_from_one_recovery_equals_the_field_by_field_certificate():
    from test_feasibility import _dispatch

    family, _ = _dispatch()
    theta = torch.as_tensor(family.sample(32, np.random.default_rng(2)))
    program = family.program(theta)
    torch.manual_seed(0)
    x = family.finalise(torch.randn(32, family.rank, dtype=torch.float64))
    fast = program.certificate(x)
    slow = CompositeProgram.certificate(program, x)
    for name in ("residual", "violation", "objective", "gap"):
        assert torch.allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12, atol=1e-12), name
    assert fast.infeasible is not None and not bool(fast.infeasible.any())


def _markowitz(n: int = 8, k: int = 2):
    w, mu, f = cp.Variable(n, name="w"), cp.Parameter(n, name="mu"), cp.Parameter((n, k), name="F")
    problem = cp.Problem(cp.Minimize(2.0 * (cp.sum_squares(f.T @ w) + cp.sum_squares(0.2 * w)) - mu @ w),
                         [cp.sum(w) == 1, w >= 0])
    sampler = lambda m, r: {"mu": r.normal(0.05, 0.05, (m, n)), "F": r.normal(0.0, 0.15, (m, n, k))}
    from convexop import from_cvxpy

    return from_cvxpy(problem, sampler, name="markowitz-test"), problem


def test_quadratic_objectives_get_a_closed_form_program_equal_to_the_generic_one():
    from convexop.families.user import UserFamily
    from convexop.serving.polish import polish_answers
    from convexop.solvers.quadratic import QuadraticProgram

    family, problem = _markowitz()
    theta = torch.as_tensor(family.sample(24, np.random.default_rng(3)))
    program, generic = family.program(theta), UserFamily.in_basis_program(family, theta)
    assert isinstance(program, QuadraticProgram) and program.p.shape == (24, 8, 8)
    torch.manual_seed(0)
    x = torch.randn(24, 8, dtype=torch.float64)
    assert torch.allclose(program.smooth(x), generic.smooth(x), rtol=1e-12, atol=1e-12)
    assert torch.allclose(program.value_and_gradient(x)[1], generic.value_and_gradient(x)[1], atol=1e-10)
    assert torch.allclose(program.smooth(x[:, None].expand(-1, 3, -1)), generic.smooth(x)[:, None].expand(-1, 3))
    assert torch.allclose(program.lipschitz, torch.linalg.eigvalsh(program.p)[:, -1])
    index = torch.tensor([3, 17, 5])
    sub = program.subset(index)
    assert torch.allclose(sub.smooth(x[index]), family.program(theta[index]).smooth(x[index]), rtol=1e-12)
    # the polish on it certifies and lands on CVXPY's answers
    result = polish_answers(family, family.finalise(torch.zeros(24, 8, dtype=torch.float64)), theta, 1e-9)
    assert bool(result.converged.all())
    split = family.split_theta(theta)
    by_name = {p.name(): p for p in problem.parameters()}
    for row in (0, 11):
        for name, value in split.items():
            by_name[name].value = value[row].numpy()
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
        assert np.abs(result.x[row].numpy() - problem.variables()[0].value).max() < 1e-6


def test_qp_dual_gradient_in_closed_form_matches_autograd():
    family = get_family("qp-dc3")
    theta = torch.as_tensor(family.sample(8, np.random.default_rng(4)))
    program = family.program(theta)
    torch.manual_seed(2)
    x = torch.randn(8, family.rank, dtype=torch.float64)
    value, gradient = program.value_and_gradient(x)
    value_ad, gradient_ad = CompositeProgram.value_and_gradient(program, x)
    assert torch.allclose(value, value_ad, rtol=1e-13) and torch.allclose(gradient, gradient_ad, rtol=1e-10, atol=1e-12)


def test_the_garbage_collector_is_restored_after_answers_are_built():
    import gc

    from convexop.serving.solve import _collector_paused

    with _collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with _collector_paused():
            pass
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()


def test_last_batch_is_reused_for_equal_values_and_recomputed_otherwise():
    from convexop.families.memo import LastBatch

    memo, calls = LastBatch(), []
    theta = torch.arange(6.0).reshape(3, 2)
    compute = lambda: calls.append(1) or len(calls)
    assert memo.get(theta, compute) == 1 and memo.get(theta.clone(), compute) == 1  # a copy hits
    assert memo.get(theta, compute, tag=torch.float32) == 2  # another tag misses
    theta[0, 0] = 7.0  # an in-place change of the caller's tensor misses
    assert memo.get(theta, compute, tag=torch.float32) == 3 and memo.get(theta.double(), compute) == 4
