"""from_cvxpy: the torch evaluator against CVXPY, both routes against CVXPY's optimum, refusals."""

import numpy as np
import pytest
import torch

cp = pytest.importorskip("cvxpy")

from convexop import from_cvxpy
from convexop.errors import InputError
from convexop.families.cvxpy_expressions import evaluate, is_smooth
from convexop.serving.polish import polish_answers


def test_evaluator_matches_cvxpy_on_many_atoms():
    rng = np.random.default_rng(0)
    x, X = cp.Variable(3, name="x"), cp.Variable((2, 3), name="X")
    P, a = cp.Parameter((3, 3), name="P"), cp.Parameter(3, name="a")
    M = rng.standard_normal((3, 3))
    exprs = [cp.sum_squares(x - a), cp.quad_form(x, M @ M.T), cp.norm(x, 2), cp.norm1(x), cp.norm_inf(x), P @ x,
             2 * x, cp.multiply(a, x), cp.log_sum_exp(x), cp.exp(x), cp.power(x, 2), x[0], x[1:], x / 2, a @ x,
             cp.huber(x, 0.5), cp.logistic(x), cp.reshape(x, (1, 3), order="F").T, cp.pnorm(x, 3),
             cp.quad_over_lin(x, 2), cp.hstack([x, x]), cp.vstack([x, x]), cp.cumsum(x), cp.diff(x), cp.trace(P),
             cp.diag(x), cp.max(x), cp.sum(X, axis=0), X @ x, cp.reshape(X, (3, 2), order="F"), X.T, X[1, :],
             cp.maximum(x, 0)]
    values = {"x": rng.standard_normal((4, 3)), "X": rng.standard_normal((4, 2, 3)),
              "P": rng.standard_normal((4, 3, 3)), "a": rng.standard_normal((4, 3))}
    variables = {x.id: torch.tensor(values["x"]), X.id: torch.tensor(values["X"])}
    params = {P.id: torch.tensor(values["P"]), a.id: torch.tensor(values["a"])}
    for expr in exprs:
        out = evaluate(expr, variables, params)
        for i in range(4):
            x.value, X.value, P.value, a.value = values["x"][i], values["X"][i], values["P"][i], values["a"][i]
            got = out[i] if out.shape[0] > 1 else out[0]
            np.testing.assert_allclose(got.numpy(), np.asarray(expr.value), atol=1e-9, err_msg=str(expr))
    assert is_smooth(cp.sum_squares(x - a)) and not is_smooth(cp.norm1(x)) and not is_smooth(cp.norm(x, 2))


def _markowitz(n=8, k=2):
    w, mu, F = cp.Variable(n, name="w"), cp.Parameter(n, name="mu"), cp.Parameter((n, k), name="F")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(F.T @ w) + 0.1 * cp.sum_squares(w) - mu @ w),
                         [cp.sum(w) == 1, w >= 0])
    sampler = lambda m, rng: {"mu": rng.normal(0.05, 0.1, (m, n)), "F": rng.normal(0, 0.3, (m, n, k))}
    return problem, sampler


def test_route_a_simplex_reproduces_cvxpy_after_polish():
    problem, sampler = _markowitz()
    family = from_cvxpy(problem, sampler, name="markowitz-test")
    assert family.route == "simple sets" and family.rank == 8
    theta = family.sample(4, np.random.default_rng(1))
    check = family.cross_check(theta)
    assert check["max_relative_objective_difference"] < 1e-6
    t = torch.as_tensor(theta)
    start = torch.full((4, 8), 1 / 8, dtype=torch.float64)  # feasible, far from optimal
    assert float(family.certificate(start, t).measure.min()) > 1e-3
    # the residual is in units of x (L = 1.2..1.9 here): 5e-10 is at least the former 1e-9 (residual * L)
    result = polish_answers(family, start, t, 5e-10, 5000)
    assert bool(result.converged.all()) and float(result.residual.max()) <= 5e-10
    assert float(family.certificate(result.x, t).measure.max()) <= 5e-10
    optimum = torch.as_tensor(family.reference(theta))
    assert family.cross_checked < 1e-6 and "cross-checked against CVXPY" in family.reference_method
    gap = (family.objective(result.x, t) - family.objective(optimum, t)).abs() / family.objective(optimum, t).abs()
    assert float(gap.max()) < 1e-6
    assert float(family.certificate(optimum, t).measure.max()) <= 5e-9


def test_route_a_box_and_l1_terms():
    u, r = cp.Variable(5, name="u"), cp.Parameter(5, name="r")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(u - r) + 0.3 * cp.norm1(u)), [u <= 0.5, u >= -0.5])
    with pytest.raises(InputError, match="do not combine"):
        from_cvxpy(problem, lambda m, rng: {"r": rng.normal(size=(m, 5))})
    problem = cp.Problem(cp.Minimize(cp.sum_squares(u - r) + 0.3 * cp.norm1(u)))
    family = from_cvxpy(problem, lambda m, rng: {"r": rng.normal(size=(m, 5))})
    theta = family.sample(3, np.random.default_rng(2))
    expected = np.sign(theta) * np.maximum(np.abs(theta) - 0.15, 0)  # soft thresholding, closed form
    np.testing.assert_allclose(family.reference(theta), expected, atol=1e-8)


def _random_qp(n=6, me=2, mi=3, seed=0):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((n, n))
    Q = L @ L.T + 0.5 * np.eye(n)
    A, G = rng.standard_normal((me, n)), rng.standard_normal((mi, n))
    y, q, b = cp.Variable(n, name="y"), cp.Parameter(n, name="q"), cp.Parameter(me, name="b")
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(y, Q) + q @ y), [A @ y == b, G @ y <= 0.3])
    sampler = lambda m, r: {"q": r.normal(size=(m, n)), "b": r.uniform(-0.2, 0.2, (m, me))}
    return problem, sampler, y, q, b


def test_route_b_dual_recovers_the_primal_optimum():
    problem, sampler, y, q, b = _random_qp()
    family = from_cvxpy(problem, sampler, name="qp-test")
    assert family.route == "QP dual" and family.rank == 5 and family.labels[0] == "lambda[0]"
    theta = family.sample(4, np.random.default_rng(3))
    z = torch.as_tensor(family.in_basis_optimum(theta))  # coefficients: E^-1 multipliers
    np.testing.assert_allclose(family.reference(theta), z.numpy() @ family.coordinates.numpy().T)
    t = torch.as_tensor(theta)
    certificate = family.certificate(z, t)
    assert float(certificate.gap.max()) < 1e-9 and float(certificate.violation.max()) < 1e-9
    assert certificate.certified(1e-9).all()
    for k in range(4):
        parts = family.split_theta(t[k:k + 1])
        q.value, b.value = parts["q"][0].numpy(), parts["b"][0].numpy()
        problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        answer = family.extra_answers(z[k:k + 1], t[k:k + 1])[0]["variables"]["y"]
        np.testing.assert_allclose(answer, y.value, atol=1e-6)
        objective = float(family.certificate(z[k:k + 1], t[k:k + 1]).objective)  # the primal objective
        assert abs(objective - problem.value) < 1e-6 * max(1, abs(problem.value))
    # polishing from zero multipliers certifies every instance
    result = polish_answers(family, torch.zeros_like(z), t, 1e-8, 200)
    assert bool(result.converged.all()) and float(family.certificate(result.x, t).measure.max()) <= 1e-8


@pytest.mark.parametrize("build, message", [
    (lambda x, p: cp.Problem(cp.Minimize(cp.sum_squares(x)), [p * p * x <= 1]), "not DPP"),
    (lambda x, p: cp.Problem(cp.Maximize(cp.sum_squares(x - p))), "not convex"),
    (lambda x, p: cp.Problem(cp.Minimize(cp.sum_squares(x - p)), [cp.exp(x[0]) + x[1] <= 1]),
     "neither a simple set nor affine"),
    (lambda x, p: cp.Problem(cp.Minimize(cp.sum(cp.abs(x - p)))), "not smooth"),
    (lambda x, p: cp.Problem(cp.Minimize(cp.sum_squares(x[0] - p)), [cp.sum(x) == 1, x[0] <= 2 * x[1]]), "singular"),
])
def test_refusals_name_the_offending_part(build, message):
    x, p = cp.Variable(3, name="x"), cp.Parameter(name="p")
    with pytest.raises(InputError, match=message):
        from_cvxpy(build(x, p), lambda m, rng: {"p": rng.random(m)})


def test_refuses_integer_variables():
    x, p = cp.Variable(3, name="x", integer=True), cp.Parameter(name="p")
    with pytest.raises(InputError, match="attribute integer"):
        from_cvxpy(cp.Problem(cp.Minimize(cp.sum_squares(x - p))), lambda m, rng: {"p": rng.random(m)})


def test_route_b_interior_point_makes_every_recovered_answer_feasible():
    rng = np.random.default_rng(4)
    n, me, mi = 8, 3, 4
    Q, p = np.diag(rng.uniform(0.1, 1.0, n)), rng.random(n)
    A, G = rng.standard_normal((me, n)), rng.standard_normal((mi, n))
    pinv = np.linalg.pinv(A)
    h = np.abs(G @ pinv).sum(1)
    y, x = cp.Variable(n, name="y"), cp.Parameter(me, name="x")
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(y, Q) + p @ y), [A @ y == x, G @ y <= h])
    sampler = lambda m, r: {"x": r.uniform(-0.9, 0.9, (m, me))}
    plain = from_cvxpy(problem, sampler)
    family = from_cvxpy(problem, sampler, interior=lambda theta: np.asarray(theta["x"]) @ pinv.T)
    theta = torch.as_tensor(family.sample(6, np.random.default_rng(5)))
    guess = 20 * torch.randn(6, family.rank, dtype=torch.float64).abs()  # poor multipliers
    assert float(family.certificate(guess, theta).violation.max()) < 1e-9
    dual = plain.qp(theta)[0]
    assert float(dual.primal_violation(dual.recover(plain.multipliers(guess))[0]).max()) > 1e-3  # unrestored
    assert float(plain.certificate(guess, theta).violation.max()) < 1e-9  # restored by the phase-I point
    result = polish_answers(family, guess, theta, 1e-9, 100)
    assert bool(result.converged.all()) and float(family.certificate(result.x, theta).measure.max()) <= 1e-9
    with pytest.raises(InputError, match="route \\(b\\) only"):
        from_cvxpy(_markowitz()[0], _markowitz()[1], interior=lambda theta: None)


def test_quadratic_queries_equal_direct_evaluation():
    from convexop.families import Family, get_family

    problem, sampler, *_ = _random_qp()
    x = cp.Variable(5, name="x")  # route (a): simple sets, shared P, then a P that varies per instance
    b, w = cp.Parameter(5, name="b"), cp.Parameter(5, name="w", nonneg=True)
    shared = cp.Problem(cp.Minimize(cp.sum_squares(np.arange(1.0, 26.0).reshape(5, 5) @ x - b)), [x >= 0])
    varying = cp.Problem(cp.Minimize(cp.sum(cp.multiply(w, cp.square(x))) - b @ x), [x <= 1])
    boxes = [from_cvxpy(shared, lambda n, rng: {"b": rng.normal(size=(n, 5))}),
             from_cvxpy(varying, lambda n, rng: {"b": rng.normal(size=(n, 5)), "w": rng.uniform(0.5, 2, (n, 5))})]
    assert [family._quadratic(torch.as_tensor(family.sample(2, np.random.default_rng(0))))[0].shape[0]
            for family in boxes] == [1, 2]
    for family in (from_cvxpy(problem, sampler), get_family("qp-dc3"), *boxes):
        theta = torch.as_tensor(family.sample(4, np.random.default_rng(8)))
        x = 0.3 * torch.randn(4, family.rank, dtype=torch.float64)
        offsets = 0.1 * torch.randn(7, family.rank, dtype=torch.float64)
        direct = family.g(x[:, None, :] + offsets[None], theta)
        fast = family.queries(x, offsets, theta)
        assert type(family).queries is not Family.queries  # the fast path is in use
        torch.testing.assert_close(fast, direct, rtol=1e-10, atol=1e-10)


def test_abs_and_norm_inf_bounds_are_boxes_that_combine():
    x = cp.Variable(3, name="x")
    b = cp.Parameter(3, name="b")
    theta = np.array([[2.0, -2.0, 0.3], [-0.05, 0.7, -3.0]])
    for constraints, lower, upper in [([cp.abs(x) <= np.array([0.1, 0.5, 1.0])], [-0.1, -0.5, -1.0], [0.1, 0.5, 1.0]),
                                      ([cp.norm_inf(x) <= 0.5, x >= -0.2], [-0.2] * 3, [0.5] * 3)]:
        problem = cp.Problem(cp.Minimize(cp.sum_squares(x - b)), constraints)
        family = from_cvxpy(problem, lambda n, rng: {"b": rng.normal(size=(n, 3))})
        assert family.f.lower.tolist() == lower and family.f.upper.tolist() == upper
        assert np.allclose(family.in_basis_optimum(theta), np.clip(theta, lower, upper), atol=1e-9)


def _pinned_mpc(velocity_cost: float):
    """Double-integrator MPC with the states as variables pinned by x[:, 0] == x0 (P singular on x0)."""
    horizon, dt = 6, 0.1
    a, b = np.array([[1.0, dt], [0.0, 1.0]]), np.array([0.5 * dt * dt, dt])
    x, u = cp.Variable((2, horizon + 1), name="x"), cp.Variable(horizon, name="u")
    x0, r = cp.Parameter(2, name="x0"), cp.Parameter(name="r")
    constraints = ([x[:, 0] == x0] + [x[:, k + 1] == a @ x[:, k] + b * u[k] for k in range(horizon)]
                   + [cp.abs(u) <= 1, x[0, :] <= 1.5])
    cost = cp.sum_squares(x[0, 1:] - r) + velocity_cost * cp.sum_squares(x[1, 1:]) + 0.01 * cp.sum_squares(u)
    problem = cp.Problem(cp.Minimize(cost), constraints)
    sampler = lambda n, rng: {"x0": np.column_stack([rng.uniform(-1, 1, n), rng.uniform(-0.5, 0.5, n)]),
                              "r": rng.uniform(-1, 1, n)}
    return problem, x, u, x0, r, sampler


def test_singular_p_positive_definite_on_the_equalities_null_space_is_solved_in_reduced_space():
    problem, x, u, x0, r, sampler = _pinned_mpc(0.0)
    family = from_cvxpy(problem, sampler)
    assert family.null_space is not None and family.null_space.shape[1] == 6  # the inputs remain free
    theta = family.sample(4, np.random.default_rng(1))
    t = torch.as_tensor(theta)
    coefficients = torch.as_tensor(family.in_basis_optimum(theta))
    certificate = family.certificate(coefficients, t)
    assert certificate.gap.max() < 1e-9 and certificate.violation.max() < 1e-9
    answers = family.extra_answers(coefficients, t)
    for k in range(len(theta)):
        split = family.split_theta(t[k:k + 1])
        x0.value, r.value = split["x0"][0].numpy(), float(split["r"][0])
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        assert np.abs(np.array(answers[k]["variables"]["u"]) - u.value).max() < 1e-6
        assert np.abs(np.array(answers[k]["variables"]["x"]) - x.value).max() < 1e-6
        assert abs(float(certificate.objective[k]) - problem.value) < 1e-7 * max(1.0, abs(problem.value))
    # polish from a perturbed start certifies in the reduced space too
    start = coefficients + 0.1 * torch.rand(coefficients.shape, generator=torch.Generator().manual_seed(0))
    assert polish_answers(family, start, t, 1e-8, 200).converged.all()


def test_a_direction_free_of_cost_and_constraints_is_refused_naming_the_fix():
    horizon = 3
    x, y = cp.Variable(horizon, name="x"), cp.Variable(horizon, name="y")
    c = cp.Parameter(horizon, name="c")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - c)), [x + 0 * y == c, x <= 1])  # y is free of all
    with pytest.raises(InputError, match="null space of the equality constraints.*add a small quadratic term"):
        from_cvxpy(problem, lambda n, rng: {"c": rng.normal(size=(n, horizon))})


def test_huber_objective_gets_no_constant_hessian_bound_and_its_reference_converges():
    """CVXPY calls huber quadratic; its Hessian read at one point (0 in the linear region) would give a
    Lipschitz bound far too small, and FISTA would not converge. Backtracking instead: CVXPY's optimum."""
    rng = np.random.default_rng(11)
    features = rng.normal(size=(25, 6))
    w, y = cp.Variable(6, name="w"), cp.Parameter(25, name="y")
    problem = cp.Problem(cp.Minimize(cp.sum(cp.huber(features @ w - y, 1.0)) + 0.1 * cp.sum_squares(w)),
                         [cp.abs(w) <= 2])
    family = from_cvxpy(problem, lambda n, rng: {"y": rng.normal(size=(n, 6)) @ features.T
                                                 + rng.standard_t(2, (n, 25))})
    theta = family.sample(8, np.random.default_rng(0))
    assert family.lipschitz(torch.as_tensor(theta)) is None
    ours = family.in_basis_optimum(theta)
    for k in range(3):
        y.value = theta[k]
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        assert np.abs(ours[k] - w.value).max() < 1e-6
