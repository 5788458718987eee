"""Active-set Newton polish: one round with the right active set, globalised from poor starts."""

import torch

from convexop.certificates import CompositeProgram
from convexop.prox import L1, Box, SeparableSum, Simplex, Zero
from convexop.references.active_set_newton import active_set_newton, newton_supported
from convexop.references.forward_backward import fista


def _quadratic(batch=16, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(batch, size + 4, size, generator=g, dtype=torch.float64)
    hessian = m.mT @ m / (size + 4) + 0.05 * torch.eye(size, dtype=torch.float64)
    linear = torch.randn(batch, size, generator=g, dtype=torch.float64)

    def smooth(x):
        if x.dim() == 2:
            return 0.5 * (x[:, None] @ hessian @ x[..., None])[:, 0, 0] + (linear * x).sum(-1)
        return 0.5 * torch.einsum("bmi,bij,bmj->bm", x, hessian, x) + torch.einsum("bmi,bi->bm", x, linear)

    lipschitz = torch.linalg.eigvalsh(hessian)[:, -1]
    return smooth, lipschitz


def _solve(h, tol=1e-10):
    smooth, lipschitz = _quadratic()
    program = CompositeProgram(smooth, h, lipschitz)
    build = lambda index: CompositeProgram(lambda x: smooth_rows(smooth, index, x), h, lipschitz[index])  # noqa: E731
    return program, build


def smooth_rows(smooth, index, x):
    """The smooth part of the instances `index` (the test programs close over all 16)."""
    full = torch.zeros(16, *x.shape[1:], dtype=x.dtype)
    full[index] = x
    return smooth(full)[index]


def test_supported_pieces():
    assert newton_supported(SeparableSum([(3, Box(-1, 1)), (2, L1(0.1)), (3, Simplex(1.0))]))
    assert newton_supported(Zero()) and newton_supported(None)


def test_one_round_at_the_optimum_active_set_and_fewer_steps_than_fista():
    for h in (Box(-0.3, 0.3), L1(0.5), Simplex(1.0), SeparableSum([(4, Box(0, 1)), (4, L1(0.2))])):
        program, build = _solve(h)
        start = program.prox(torch.zeros(16, 8, dtype=torch.float64), torch.ones(16, 1, dtype=torch.float64))
        reference = fista(build, start, 1e-11, 20000)
        assert bool(reference.converged.all())
        near = program.prox(reference.x + 1e-4 * torch.randn(16, 8, dtype=torch.float64), torch.ones(16, 1, dtype=torch.float64))
        polished = active_set_newton(build, near, 1e-9, 1000)
        assert bool(polished.converged.all()) and float((polished.x - reference.x).abs().max()) < 1e-7
        assert float(polished.iterations.double().mean()) <= 2.0, h
        cold_newton = active_set_newton(build, start, 1e-9, 1000)
        cold_fista = fista(build, start, 1e-9, 20000)
        assert bool(cold_newton.converged.all())
        assert cold_newton.iterations.double().mean() < cold_fista.iterations.double().mean()
