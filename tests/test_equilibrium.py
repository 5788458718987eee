import pytest
import torch

from convexop.equilibrium import anderson, equilibrium_output, picard
from convexop.families import get_family
from convexop.models import GEO, from_checkpoint, save_model


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
