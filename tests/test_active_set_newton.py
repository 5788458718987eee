"""Active-set Newton polish: one round with the right active set, globalised from poor starts."""

import torch

from convexop.prox import L1, Box, SeparableSum, Simplex, Zero
from convexop.solvers.fista import fista
from convexop.solvers.newton import active_set_newton, newton_supported
from convexop.solvers.program import CompositeProgram

BATCH = 16


def _quadratic(batch=BATCH, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(batch, size + 4, size, generator=g, dtype=torch.float64)
    hessian = m.mT @ m / (size + 4) + 0.05 * torch.eye(size, dtype=torch.float64)
    linear = torch.randn(batch, size, generator=g, dtype=torch.float64)

    def smooth(x):
        if x.dim() == 2:
            return 0.5 * (x[:, None] @ hessian @ x[..., None])[:, 0, 0] + (linear * x).sum(-1)
        return 0.5 * torch.einsum("bmi,bij,bmj->bm", x, hessian, x) + torch.einsum("bmi,bi->bm", x, linear)

    lipschitz = torch.linalg.eigvalsh(hessian)[:, -1]
    return smooth, lipschitz, hessian


def _program(h, closed_form=False):
    """The 16 test programs with h, restrictable to any subset (and subsets of subsets);
    closed_form=True gives the program its exact Hessian instead of central differences."""
    smooth, lipschitz, hessian = _quadratic()

    def build(index):
        return CompositeProgram(lambda x: smooth_rows(smooth, index, x), h, lipschitz[index],
                                hessian=(lambda x: hessian[index]) if closed_form else None,
                                select=lambda sub: build(index[sub]))

    return build(torch.arange(BATCH))


def smooth_rows(smooth, index, x):
    """The smooth part of the instances `index` (the test programs close over all 16)."""
    full = torch.zeros(BATCH, *x.shape[1:], dtype=x.dtype)
    full[index] = x
    return smooth(full)[index]


def test_supported_pieces():
    assert newton_supported(SeparableSum([(3, Box(-1, 1)), (2, L1(0.1)), (3, Simplex(1.0))]))
    assert newton_supported(Zero()) and newton_supported(None)


def test_one_round_at_the_optimum_active_set_and_fewer_steps_than_fista():
    # the residual is in units of x (||x - prox(x - grad / L)||, L ~ 3 here): the tolerances are the
    # former ones (residual / t) divided by 3
    for h in (Box(-0.3, 0.3), L1(0.5), Simplex(1.0), SeparableSum([(4, Box(0, 1)), (4, L1(0.2))])):
        program = _program(h)
        start = program.prox(torch.zeros(BATCH, 8, dtype=torch.float64), torch.ones(BATCH, 1, dtype=torch.float64))
        reference = fista(program, start, 3e-12, 20000)
        assert bool(reference.converged.all())
        assert bool((program.measure(reference.x) <= 3e-12).all())
        near = program.prox(reference.x + 1e-4 * torch.randn(BATCH, 8, dtype=torch.float64),
                            torch.ones(BATCH, 1, dtype=torch.float64))
        polished = active_set_newton(program, near, 3e-10, 1000)
        assert bool(polished.converged.all()) and float((polished.x - reference.x).abs().max()) < 1e-7
        assert bool((polished.residual <= 3e-10).all())
        assert torch.allclose(polished.residual, program.measure(polished.x))
        assert float(polished.iterations.double().mean()) <= 3.0, h  # certifying round(s) + the finishing round
        cold_newton = active_set_newton(program, start, 3e-10, 1000)
        cold_fista = fista(program, start, 3e-10, 20000)
        assert bool(cold_newton.converged.all())
        assert cold_newton.iterations.double().mean() < cold_fista.iterations.double().mean()
        # the closed-form Hessian on the program gives the same one-round polish
        exact = active_set_newton(_program(h, closed_form=True), near, 3e-10, 1000)
        assert bool(exact.converged.all()) and float((exact.x - reference.x).abs().max()) < 1e-7
        assert float(exact.iterations.double().mean()) <= 2.0, h
