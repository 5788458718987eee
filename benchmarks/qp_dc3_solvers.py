"""Cold classical solvers of DC3's QP (any size of its recipe), one call each over the instances x
(n, me): OSQP and Clarabel per instance, CVXPY + Clarabel per instance, Moreau's batched CPU solver
when importable. Each returns the duals (n, me + mi) and the seconds it took (setup included where the
solver needs one per call). Used by benchmarks/qp_dc3.py and qp_dc3_1000.py; `problem` is
`convexop.families.qp_dc3.dc3_problem(...)`."""

from __future__ import annotations

import time

import numpy as np


def osqp_solve(problem, x: np.ndarray, **settings) -> tuple[np.ndarray, float]:
    """Cold OSQP per instance (one solver object, l/u updated, warm start off): duals (n, me + mi), seconds."""
    import osqp
    from scipy import sparse

    mi = len(problem["h"])
    k = sparse.csc_matrix(np.vstack([problem["A"], problem["G"]]))
    solver = osqp.OSQP()
    solver.setup(sparse.csc_matrix(np.diag(problem["Q"])), problem["p"], k,
                 np.concatenate([x[0], -np.inf * np.ones(mi)]), np.concatenate([x[0], problem["h"]]), verbose=False,
                 warm_starting=False, **settings)
    duals, started = [], time.perf_counter()
    for row in x:
        solver.update(l=np.concatenate([row, -np.inf * np.ones(mi)]), u=np.concatenate([row, problem["h"]]))
        duals.append(solver.solve().y)
    return np.array(duals), time.perf_counter() - started


def clarabel_solve(problem, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Clarabel per instance, built and solved for each (default tolerances): duals, seconds."""
    import clarabel
    from scipy import sparse

    p = sparse.csc_matrix(np.diag(problem["Q"]))
    k = sparse.csc_matrix(np.vstack([problem["A"], problem["G"]]))
    cones = [clarabel.ZeroConeT(len(problem["A"])), clarabel.NonnegativeConeT(len(problem["G"]))]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    duals, started = [], time.perf_counter()
    for row in x:
        solver = clarabel.DefaultSolver(p, problem["p"], k, np.concatenate([row, problem["h"]]), cones, settings)
        duals.append(np.asarray(solver.solve().z))
    return np.array(duals), time.perf_counter() - started


def cvxpy_solve(problem, x: np.ndarray) -> tuple[np.ndarray, float]:
    import cvxpy as cp

    y, rhs = cp.Variable(len(problem["p"])), cp.Parameter(len(problem["A"]))
    constraints = [problem["A"] @ y == rhs, problem["G"] @ y <= problem["h"]]
    qp = cp.Problem(cp.Minimize(0.5 * cp.sum(cp.multiply(problem["Q"], cp.square(y))) + problem["p"] @ y), constraints)
    duals, started = [], time.perf_counter()
    for row in x:
        rhs.value = row
        qp.solve(solver=cp.CLARABEL)
        duals.append(np.concatenate([constraints[0].dual_value, constraints[1].dual_value]))
    return np.array(duals), time.perf_counter() - started


def moreau_solve(problem, x: np.ndarray, kind: str) -> tuple[np.ndarray, float] | None:
    try:
        import moreau
    except ImportError:
        return None
    n = len(x)
    settings = moreau.Settings(device="cpu", batch_size=n, solver=kind)
    cones = moreau.Cones(num_zero_cones=50, num_nonneg_cones=50)
    started = time.perf_counter()
    solver = moreau.CompiledSolver(n=100, m=100, P_row_offsets=list(range(101)), P_col_indices=list(range(100)),
                                   A_row_offsets=[100 * i for i in range(101)], A_col_indices=list(range(100)) * 100,
                                   cones=cones, settings=settings)
    k = np.vstack([problem["A"], problem["G"]]).reshape(-1)
    solver.setup(np.tile(problem["Q"], (n, 1)), np.tile(k, (n, 1)))
    solution = solver.solve(np.tile(problem["p"], (n, 1)), np.hstack([x, np.tile(problem["h"], (n, 1))]))
    return np.asarray(solution.z), time.perf_counter() - started
