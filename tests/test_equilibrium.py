import numpy as np
import pytest
import torch

from convexop.families import get_family
from convexop.models import GEO, from_checkpoint, save_model
from convexop.solvers.fixed_point import anderson, picard


def contraction_map(rate=0.9, dim=6, batch=4, seed=0):
    """x -> rate * Q tanh(x) + c: a contraction with a unique fixed point."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    c = 0.1 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    return lambda x: rate * torch.tanh(x) @ q.T + c


def test_anderson_is_active_and_beats_picard():
    fn = contraction_map(rate=0.95)
    x0 = torch.zeros(4, 6, dtype=torch.float64)
    xp, sp = picard(fn, x0, max_iter=1000, abs_tol=1e-10, rel_tol=1e-10)
    xa, sa = anderson(fn, x0, max_iter=1000, abs_tol=1e-10, rel_tol=1e-10, memory=5)
    assert sp.converged.all() and sa.converged.all()
    assert torch.allclose(xp, xa, atol=1e-8)
    # fails if acceleration is switched off (Anderson would need as many steps as Picard)
    assert sa.iterations.sum() * 3 < sp.iterations.sum()


def test_non_convergence_is_flagged_per_sample():
    fn = contraction_map(rate=0.999)
    _, stats = picard(fn, torch.zeros(4, 6, dtype=torch.float64), max_iter=5, abs_tol=1e-12, rel_tol=1e-12)
    assert not stats.converged.any() and (stats.residual > 1e-12).all()
    _, stats = anderson(fn, torch.zeros(4, 6, dtype=torch.float64), max_iter=4, abs_tol=1e-12, rel_tol=1e-12)
    assert not stats.converged.any()


def batch_with_degenerate_sample(dtype, kind):
    """The contraction map on samples 1..3; sample 0 is degenerate:
    "fixed": already at its fixed point 0 from the start (zero residual history);
    "shift": T(x) = x + d (no fixed point; every residual identical, a rank-1 Gram matrix)."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    c = 0.1 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    c[0] = 0.0
    q, c = q.to(dtype), c.to(dtype)
    shift = torch.full((6,), 0.1, dtype=dtype)
    first = (torch.arange(4) == 0)[:, None]

    def fn(x):
        y = 0.9 * torch.tanh(x) @ q.T + c
        return torch.where(first, x + shift, y) if kind == "shift" else y

    return fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anderson_sample_at_its_fixed_point_from_the_start(dtype):
    """Zero residual history: the old float32 Gram matrix was exactly zero and the solve raised."""
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    fn = batch_with_degenerate_sample(dtype, "fixed")
    x0 = torch.zeros(4, 6, dtype=dtype)
    xa, sa = anderson(fn, x0, max_iter=200, abs_tol=tol, rel_tol=tol)
    xp, sp = picard(fn, x0, max_iter=2000, abs_tol=tol, rel_tol=tol)
    assert torch.isfinite(xa).all() and torch.isfinite(sa.residual).all()
    assert sa.converged.all() and sp.converged.all()
    assert torch.equal(xa[0], x0[0]) and sa.residual[0] == 0
    assert torch.allclose(xa[1:], xp[1:], atol=20 * tol)


@pytest.mark.parametrize("dtype, lam", [(torch.float32, 1e-8), (torch.float64, 0.0)])
def test_anderson_identical_residuals_never_raise(dtype, lam):
    """Every residual of sample 0 identical (rank-1 Gram): lam * mean(diag) vanished in the rounding
    (float32) or was zero (lam=0), and the solve raised for the whole batch."""
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    fn = batch_with_degenerate_sample(dtype, "shift")
    x0 = torch.zeros(4, 6, dtype=dtype)
    xa, sa = anderson(fn, x0, max_iter=100, abs_tol=tol, rel_tol=tol, lam=lam)
    xp, _ = picard(fn, x0, max_iter=2000, abs_tol=tol, rel_tol=tol)
    assert torch.isfinite(xa).all()
    assert not sa.converged[0] and sa.converged[1:].all()  # flagged, not silent
    assert torch.allclose(sa.residual[0], torch.tensor(0.1 * 6**0.5, dtype=dtype))
    assert torch.allclose(xa[1:], xp[1:], atol=20 * tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anderson_sample_frozen_early_returns_its_own_iterate(dtype):
    """An affine sample is solved exactly after 3 evaluations while another keeps iterating: the
    history slots it never wrote (zeros) were picked as its 'best iterate' and x = 0 came back."""
    c = torch.tensor([[0.1, 0.2, 0.3], [1.0, -2.0, 0.5]], dtype=dtype)
    rate = torch.tensor([[0.5], [0.99]], dtype=dtype)

    def fn(x):  # sample 0: affine (fixed point 2c); sample 1: slow nonlinear contraction
        return torch.where(torch.tensor([[True], [False]]), 0.5 * x + c, rate * torch.tanh(x) + c)

    xa, sa = anderson(fn, torch.zeros(2, 3, dtype=dtype), max_iter=200, abs_tol=1e-5, rel_tol=1e-5)
    assert sa.iterations[0] < 5 < sa.iterations[1]
    assert sa.converged.all()
    assert torch.allclose(xa[0], 2 * c[0], atol=1e-5)


def test_anderson_falls_back_to_picard_where_the_gram_solve_fails(monkeypatch):
    """A sample whose Gram system fails (info != 0, garbage weights) takes x <- T(x) and still
    converges to the fixed point; the other samples keep their Anderson steps."""
    fn = contraction_map(rate=0.95)
    x0 = torch.zeros(4, 6, dtype=torch.float64)
    _, accelerated = anderson(fn, x0, max_iter=1000, abs_tol=1e-10, rel_tol=1e-10)
    solve_ex = torch.linalg.solve_ex

    def failing_for_sample_0(a, b):
        x, info = solve_ex(a, b)
        x, info = x.clone(), info.clone()
        x[0], info[0] = float("nan"), 1
        return x, info

    monkeypatch.setattr(torch.linalg, "solve_ex", failing_for_sample_0)
    xa, sa = anderson(fn, x0, max_iter=1000, abs_tol=1e-10, rel_tol=1e-10)
    xp, sp = picard(fn, x0, max_iter=1000, abs_tol=1e-10, rel_tol=1e-10)
    assert sa.converged.all() and torch.isfinite(xa).all()
    assert torch.allclose(xa, xp, atol=1e-8)
    assert torch.equal(sa.iterations[1:], accelerated.iterations[1:])
    assert abs(int(sa.iterations[0]) - int(sp.iterations[0])) <= 1  # Picard's count, not Anderson's


def test_equilibrium_geo_float32_batch_forward_backward_does_not_raise():
    """`train heat-pde --model geo --set mode=equilibrium` died at step ~200 with a singular Gram
    matrix (repeated iterates in float32). A tied layer that ignores the instance (A = B = 0) has
    the fixed point act(bias), which Anderson hits exactly: parallel, then zero residuals."""
    family = get_family("heat-pde")
    theta = torch.as_tensor(family.sample(128, np.random.default_rng(0)), dtype=torch.float32)
    for degenerate in (False, True):
        torch.manual_seed(0)
        model = GEO(family, mode="equilibrium")  # the CLI's defaults: float32, Anderson, phantom
        if degenerate:
            with torch.no_grad():
                model.A.zero_()
                model.B.zero_()
        model.train()
        model.values(theta).pow(2).mean().backward()
        stats = model.last_stats
        assert stats.converged.all() and torch.isfinite(stats.residual).all()
        for name, p in model.named_parameters():
            assert torch.isfinite(p.grad).all(), name
        model.eval()
        with torch.no_grad():
            assert torch.isfinite(model.values(theta)).all()
        assert model.last_stats.converged.all()


def small_geo(backward, **kwargs):
    family = get_family("heat-pde", rank=3).double()
    torch.manual_seed(1)
    model = GEO(family, depth=200, width=4, mode="equilibrium", init="scaled", init_std=0.5,
                backward=backward, tol=1e-13, contraction=0.3, start_std=0.0, **kwargs).double()
    return model


@pytest.mark.parametrize("backward, options", [("implicit", {}), ("phantom", {"phantom_steps": 80}),
                                               ("unrolled", {})])
def test_gradcheck_each_backward_mode(backward, options):
    model = small_geo(backward, **options)
    model.train()

    def fn(theta):
        return model.coefficients(theta)

    theta = torch.tensor([[0.11], [0.33]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (theta,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_implicit_parameter_gradients_match_unrolled():
    theta = torch.tensor([[0.05], [0.25], [0.4]], dtype=torch.float64)
    grads = {}
    for backward in ("implicit", "unrolled"):
        model = small_geo(backward)
        model.train()
        model.coefficients(theta).pow(2).sum().backward()
        grads[backward] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads["implicit"], grads["unrolled"], rtol=1e-6, atol=1e-9)


def test_equilibrium_parameter_count_and_round_trip(tmp_path):
    family = get_family("heat-pde")
    model = GEO(family, depth=30, width=20, mode="equilibrium")
    assert model.parameter_count() == 8 * (8 + 40 + 1) + 64
    save_model(model, tmp_path)
    again = from_checkpoint(tmp_path)
    model.set_inference(start="zero")
    again.set_inference(start="zero")
    theta = torch.tensor([[0.1], [0.2]])
    with torch.no_grad():
        assert torch.equal(model.coefficients(theta), again.coefficients(theta))
    assert again.last_stats is not None and again.last_stats.iterations.shape == (2,)
