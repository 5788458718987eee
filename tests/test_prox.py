"""Tests of the proximal-map library ``convexop.prox`` (float64 unless stated)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convexop.prox import (
    L1,
    AsymmetricQuadratic,
    Box,
    Dilated,
    ElasticNet,
    L2Ball,
    NonNegative,
    Prox,
    Scaled,
    SeparableSum,
    Simplex,
    Translated,
    Zero,
    elliptic_potential,
    negative_part_penalty,
)

D = torch.float64
INF = math.inf
N = 5
HYP = settings(max_examples=25, derandomize=True, deadline=None)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=D)


def randn(*shape, seed=0, scale=2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=D)


# every map works on vectors of length N = 5
MAPS = {
    "zero": lambda: Zero(),
    "box": lambda: Box(-0.5, 1.5),
    "box_coord": lambda: Box([0, -INF, None, -1, -INF], [10, INF, None, 1, 0.5]),
    "nonneg": lambda: NonNegative(),
    "l1": lambda: L1(0.7),
    "l2ball": lambda: L2Ball(1.5, center=[1.0, 0.0, -1.0, 0.5, 0.0]),
    "simplex": lambda: Simplex(2.0),
    "elastic": lambda: ElasticNet(0.4, 0.8),
    "asym": lambda: AsymmetricQuadratic(0.5, 3.0),
    "negpart": lambda: negative_part_penalty(0.5),
    "elliptic": lambda: elliptic_potential(0.3),
    "scaled": lambda: Scaled(L1(0.5), 3.0),
    "translated": lambda: Translated(Box(0.0, 1.0), [0.5, -1.0, 0.0, 2.0, 0.1]),
    "dilated": lambda: Dilated(ElasticNet(0.3, 1.0), -2.0),
    "sepsum": lambda: SeparableSum([(1, Box(0, 10)), (2, L1(1.0)), (2, L2Ball(0.5))]),
    "nested": lambda: Scaled(Translated(AsymmetricQuadratic(1.0, 2.0), 0.3), 0.5),
}
# separable maps with scalar parameters: valid on 1-coordinate vectors (grid search)
SEPARABLE_SCALAR = ["zero", "box", "nonneg", "l1", "elastic", "asym", "negpart", "elliptic",
                    "scaled", "dilated", "nested"]


# ------------------------------------------------------------------ closed forms
def test_zero_and_nonnegative_closed_form():
    x = t([[-1.0, 0.0, 2.5]])
    assert torch.equal(Zero()(x, 3.0), x)
    assert torch.equal(Zero().value(x), t([0.0]))
    assert torch.equal(NonNegative()(x), t([[0.0, 0.0, 2.5]]))
    assert NonNegative().is_indicator and NonNegative().separable


def test_box_closed_form_scalar_and_per_coordinate():
    assert torch.equal(Box(0.0, 1.0)(t([[-1.0, 0.5, 2.0]])), t([[0.0, 0.5, 1.0]]))
    assert Box([0.1], [0.3])(t([[0.0]])).item() == 0.1  # bounds kept in float64
    box = Box([0, -INF, None], [10, INF, None])  # only coordinate 0 in [0, 10]
    x = t([[-3.0, -5.0, 7.0], [20.0, 1.0, -2.0]])
    assert torch.equal(box(x), t([[0.0, -5.0, 7.0], [10.0, 1.0, -2.0]]))
    assert box.separable and box.is_indicator
    assert torch.equal(box.value(t([[10.0, -1e9, 3.0], [10.5, 0.0, 0.0]])), t([0.0, INF]))
    with pytest.raises(ValueError, match="3 coordinates"):
        box(torch.zeros(2, 4, dtype=D))


def test_indicator_value_tolerance():
    box = Box(0.0, 1.0)
    assert box.value(t([[1.0 + 1e-12, -1e-12]])).item() == 0.0
    assert box.value(t([[1.0 + 1e-6, 0.0]])).item() == INF
    ball = L2Ball(2.0)
    assert ball.value(t([[2.0 * (1 + 1e-12), 0.0]])).item() == 0.0
    assert ball.value(t([[2.001, 0.0]])).item() == INF
    simplex = Simplex(1.0)
    assert simplex.value(t([[0.25, 0.75 + 1e-13], [0.5, 0.6], [-0.1, 1.1]])).tolist() == [
        0.0, INF, INF]


def test_l1_and_elastic_net_closed_form():
    x = t([[-2.0, -0.3, 0.1, 1.0, 3.0]])
    assert torch.allclose(L1(0.5)(x, 2.0), t([[-1.0, 0.0, 0.0, 0.0, 2.0]]))
    assert torch.allclose(L1(0.5).value(x), t([3.2]))
    assert torch.allclose(ElasticNet(1.0, 1.0)(x), t([[-0.5, 0.0, 0.0, 0.0, 1.0]]))
    assert torch.allclose(ElasticNet(1.0, 2.0).value(t([[1.0, -2.0]])), t([3.0 + 5.0]))


def test_l2_ball_closed_form():
    ball = L2Ball(2.0, center=[1.0, 0.0])
    x = t([[4.0, 4.0], [1.5, 0.5], [1.0, 0.0]])
    expected = t([[1.0 + 1.2, 1.6], [1.5, 0.5], [1.0, 0.0]])
    assert torch.allclose(ball(x), expected)
    assert not ball.separable


def test_simplex_closed_form():
    s = Simplex()
    x = t([[0.5, 0.5], [2.0, 0.0], [0.0, 0.0], [3.0, -1.0]])
    assert torch.allclose(s(x), t([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]))
    assert torch.allclose(Simplex(3.0)(torch.zeros(1, 3, dtype=D)), torch.ones(1, 3, dtype=D))


def test_asymmetric_quadratic_and_named_constructors():
    f = AsymmetricQuadratic(1.0, 3.0)
    x = t([[2.0, -2.0, 0.0]])
    assert torch.allclose(f(x, 0.5), t([[2.0 / 1.5, -2.0 / 2.5, 0.0]]))
    assert torch.allclose(f.value(x), t([0.5 * 4 + 1.5 * 4]))
    phi = elliptic_potential(0.5)
    assert (phi.positive, phi.negative) == (1.0, 0.5)
    y = randn(4, N, seed=1)
    direct = (0.5 * y**2 - 0.25 * torch.clamp(y, max=0) ** 2).sum(-1)
    assert torch.allclose(phi.value(y), direct)
    pen = negative_part_penalty(0.5)
    assert pen.positive == 0.0 and abs(pen.negative - 1.0 / 3.0) < 1e-15


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_negative_part_penalty_is_heat_activation_exactly(dtype):
    y = randn(64, 7, seed=2).to(dtype)
    out = negative_part_penalty(0.5)(y)
    assert torch.equal(out, y - 0.25 * torch.clamp(y, max=0.0))
    for xi in (0.0, 0.3, 1.0, 1.7):  # all admissible xi, up to round-off
        y64 = y.double()
        expected = y64 - (xi / 2) * torch.clamp(y64, max=0.0)
        assert torch.allclose(negative_part_penalty(xi)(y64), expected, rtol=1e-14, atol=0)


# ------------------------------------------------------------------ optimality
@pytest.mark.parametrize("name", SEPARABLE_SCALAR)
def test_separable_prox_beats_a_fine_grid(name):
    """Independent check: p minimises f(y) + (y - x)^2 / (2 step) over a 1-D grid."""
    f = MAPS[name]()
    x = randn(3, N, seed=3, scale=1.5).clamp(-4, 4)
    step = t([0.3, 1.0, 2.5])[:, None]
    p = f(x, step[:, 0])
    grid = torch.linspace(-7, 7, 7001, dtype=D)
    y = grid.expand(3, N, -1)

    def objective(z, xx):
        return f.value(z.unsqueeze(-1)) + (z - xx) ** 2 / (2 * step.unsqueeze(-1))

    obj_p = objective(p.unsqueeze(-1), x.unsqueeze(-1)).squeeze(-1)
    obj_grid = objective(y, x.unsqueeze(-1))
    best, arg = obj_grid.min(dim=-1)
    assert torch.isfinite(obj_p).all()
    assert (obj_p <= best + 1e-12).all()
    assert torch.allclose(p, grid[arg], atol=5e-3)


@pytest.mark.parametrize("f", [AsymmetricQuadratic(0.5, 3.0), elliptic_potential(0.8),
                               negative_part_penalty(1.2), AsymmetricQuadratic(2.0, 0.0)])
def test_smooth_first_order_condition(f):
    x, step = randn(50, N, seed=4), 0.1 + torch.rand(50, dtype=D) * 3
    p = f(x, step)
    grad = f.positive * p.clamp(min=0) + f.negative * p.clamp(max=0)
    assert torch.allclose(p - x + step[:, None] * grad, torch.zeros_like(x), atol=1e-12)


@pytest.mark.parametrize("l1,l2", [(0.7, 0.0), (0.4, 0.8), (0.0, 2.0)])
def test_l1_elastic_subgradient_condition(l1, l2):
    f = ElasticNet(l1, l2) if l2 > 0 else L1(l1)
    x, step = randn(40, N, seed=5), 0.1 + torch.rand(40, 1, dtype=D) * 2
    p = f(x, step[:, 0])
    g = (x - p) / step - l2 * p  # must lie in l1 * subdifferential of |.| at p
    nz = p != 0
    assert torch.allclose(g[nz], l1 * torch.sign(p[nz]), atol=1e-12)
    assert (g[~nz].abs() <= l1 + 1e-12).all()


def _simplex_by_bisection(x: torch.Tensor, total: float) -> torch.Tensor:
    """Reference: theta with sum max(x - theta, 0) = total by bisection, row by row."""
    lo = x.min(dim=-1, keepdim=True).values - total
    hi = x.max(dim=-1, keepdim=True).values
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        too_big = (x - mid).clamp(min=0).sum(-1, keepdim=True) > total
        lo, hi = torch.where(too_big, mid, lo), torch.where(too_big, hi, mid)
    return (x - 0.5 * (lo + hi)).clamp(min=0)


@pytest.mark.parametrize("total", [1.0, 2.5])
def test_simplex_matches_bisection(total):
    x = randn(30, 4, 9, seed=6)
    x[0, 0] = 0.3  # ties
    assert torch.allclose(Simplex(total)(x), _simplex_by_bisection(x, total), atol=1e-12)


SAMPLERS = {
    "box": lambda g, m: -0.5 + 2.0 * torch.rand(m, N, generator=g, dtype=D),
    "nonneg": lambda g, m: torch.rand(m, N, generator=g, dtype=D) * 5,
    "l2ball": lambda g, m: t([1.0, 0.0, -1.0, 0.5, 0.0])
    + 1.5 * torch.rand(m, 1, generator=g, dtype=D)
    * torch.nn.functional.normalize(torch.randn(m, N, generator=g, dtype=D), dim=-1),
    "simplex": lambda g, m: 2.0 * torch.nn.functional.normalize(
        -torch.log(torch.rand(m, N, generator=g, dtype=D)), p=1, dim=-1),
    "translated": lambda g, m: t([0.5, -1.0, 0.0, 2.0, 0.1]) + torch.rand(m, N, generator=g,
                                                                           dtype=D),
}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_projection_variational_inequality(name):
    f, g = MAPS[name](), torch.Generator().manual_seed(7)
    assert f.is_indicator
    x = randn(20, N, seed=8, scale=3.0)
    p = f(x, 0.7)
    assert (f.value(p) == 0).all()
    y = SAMPLERS[name](g, 20)
    assert (f.value(y) == 0).all()
    assert ((p - x) * (y - p)).sum(-1).min() >= -1e-12
    assert torch.equal(f(x, 5.0), p)  # projections ignore the step


# ------------------------------------------------------------------ Moreau
CONJUGATES = [  # (f, independent prox of step * f^*)
    (L1(0.7), lambda x, s: x.clamp(-0.7, 0.7)),
    (Zero(), lambda x, s: torch.zeros_like(x)),
    (Box(-1.0, 2.0), lambda x, s: torch.where(x > 2 * s, x - 2 * s,
                                              torch.where(x < -s, x + s, torch.zeros_like(x)))),
    (L2Ball(1.5), lambda x, s: x * (1 - 1.5 * s / x.norm(dim=-1, keepdim=True)).clamp(min=0)),
    (AsymmetricQuadratic(0.5, 4.0), lambda x, s: AsymmetricQuadratic(2.0, 0.25)(x, s)),
    (ElasticNet(0.4, 0.8), lambda x, s: torch.where(
        x.abs() <= 0.4, x, torch.sign(x) * (0.4 + (x.abs() - 0.4) / (1 + s / 0.8)))),
]


@pytest.mark.parametrize("k", range(len(CONJUGATES)))
def test_moreau_decomposition_with_independent_conjugates(k):
    f, conj = CONJUGATES[k]
    x = randn(25, N, seed=9)
    assert torch.allclose(f(x) + conj(x, 1.0), x, atol=1e-12)
    assert torch.allclose(f.conjugate_prox(x), conj(x, 1.0), atol=1e-12)
    for s in (0.3, 2.0):
        # x = prox_{s f}(x) + s prox_{f*/s}(x/s)
        assert torch.allclose(f(x, s) + s * conj(x / s, 1.0 / s), x, atol=1e-12)
        assert torch.allclose(f.conjugate_prox(x, s), conj(x, s), atol=1e-12)


@pytest.mark.parametrize("name", sorted(MAPS))
def test_moreau_decomposition_all_maps(name):
    f = MAPS[name]()
    x = randn(10, N, seed=10)
    assert torch.allclose(f(x) + f.conjugate_prox(x), x, atol=1e-12)
    s = 0.1 + torch.rand(10, dtype=D) * 3
    recon = f(x, s) + s[:, None] * f.conjugate_prox(x / s[:, None], 1.0 / s)
    assert torch.allclose(recon, x, atol=1e-12)


# ------------------------------------------------------------------ firm non-expansiveness
vectors = st.lists(st.floats(-20, 20, allow_nan=False), min_size=2 * N, max_size=2 * N)


@pytest.mark.parametrize("name", sorted(MAPS))
@HYP
@given(values=vectors, step=st.floats(0.01, 10.0))
def test_firmly_nonexpansive(name, values, step):
    f = MAPS[name]()
    xy = t(values).reshape(2, N)
    px, py = f(xy, step)
    d = px - py
    lhs, rhs = (d * d).sum(), (d * (xy[0] - xy[1])).sum()
    assert lhs <= rhs + 1e-10 * (1 + rhs.abs())


@pytest.mark.parametrize("name", sorted(MAPS))
@settings(max_examples=10, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_conjugate_prox_firmly_nonexpansive(name, seed):
    f = MAPS[name]()
    x, y = randn(2, 8, N, seed=seed, scale=4.0)
    px, py = f.conjugate_prox(x, 0.6), f.conjugate_prox(y, 0.6)
    d = px - py
    assert ((d * d).sum(-1) <= (d * (x - y)).sum(-1) + 1e-10).all()


# ------------------------------------------------------------------ steps and shapes
@pytest.mark.parametrize("name", sorted(MAPS))
def test_per_sample_step_matches_loop(name):
    f = MAPS[name]()
    x = randn(6, 3, N, seed=11)
    step = 0.1 + torch.rand(6, dtype=D) * 4
    batched = f(x, step)
    looped = torch.stack([f(x[i], float(step[i])) for i in range(6)])
    assert torch.allclose(batched, looped, atol=1e-14)
    assert torch.allclose(f(x[:, 0], step), looped[:, 0], atol=1e-14)
    assert torch.allclose(f(x, step[:, None]), looped, atol=1e-14)  # shape (batch, 1)
    assert torch.allclose(f(x, torch.tensor(0.7, dtype=D)), f(x, 0.7))
    conj = torch.stack([f.conjugate_prox(x[i], float(step[i])) for i in range(6)])
    assert torch.allclose(f.conjugate_prox(x, step), conj, atol=1e-12)
    assert f.value(x).shape == (6, 3)


def test_float32_and_leading_dims():
    x = randn(2, 3, 4, N, seed=12).float()
    for name in sorted(MAPS):
        out = MAPS[name]()(x, 0.5)
        assert out.dtype == torch.float32 and out.shape == x.shape
        assert torch.allclose(out.reshape(-1, N), MAPS[name]()(x.reshape(-1, N), 0.5))
    assert (Simplex().value(Simplex()(x)) == 0).all()


@pytest.mark.parametrize("step,match", [(0.0, "step"), (-1.0, "step"), (INF, "step"),
                                        (torch.ones(4), "shape"), (t([1.0, -1.0, 1.0]), "> 0")])
def test_bad_steps(step, match):
    with pytest.raises(ValueError, match=match):
        L1()(torch.zeros(3, N, dtype=D), step)


# ------------------------------------------------------------------ autograd
def test_gradcheck_smooth_maps():
    x = randn(3, N, seed=13)
    x = torch.where(x.abs() < 0.2, x.sign() * 0.5 + x, x).requires_grad_()  # away from 0
    step = (0.5 + torch.rand(3, dtype=D)).requires_grad_()
    shift = t([0.1, -0.2, 0.3, 0.0, 0.4])
    for f in [AsymmetricQuadratic(0.5, 3.0), elliptic_potential(0.5),
              Scaled(AsymmetricQuadratic(1.0, 2.0), 2.5),
              Translated(AsymmetricQuadratic(1.0, 2.0), shift),
              Scaled(Translated(negative_part_penalty(0.5), shift), 0.7)]:
        def fn(xx, ss, f=f):
            return f(xx + shift, ss) if isinstance(f, Translated) else f(xx, ss)
        assert torch.autograd.gradcheck(fn, (x, step))
        assert torch.autograd.gradcheck(lambda xx, ss, f=f: f.conjugate_prox(xx, ss), (x, step))


def test_gradients_flow_through_nonsmooth_maps():
    x = t([[-2.0, 0.3, 4.0]]).requires_grad_()
    Box(0.0, 1.0)(x).sum().backward()
    assert torch.equal(x.grad, t([[0.0, 1.0, 0.0]]))
    y = randn(2, N, seed=14, scale=3.0).requires_grad_()
    for f in [L2Ball(1.0), Simplex(), L1(0.5), SeparableSum([(2, L1()), (3, L2Ball())])]:
        (f(y) ** 2).sum().backward()
        assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
        y.grad = None
    z = randn(2, N, seed=15, scale=3.0).requires_grad_()
    assert torch.autograd.gradcheck(L2Ball(1.0), (z,))  # smooth outside the ball


# ------------------------------------------------------------------ algebra
@pytest.mark.parametrize("inner", ["box", "l1", "l2ball", "simplex", "asym", "box_coord"])
def test_algebra_identities(inner):
    f = MAPS[inner]()
    x = randn(12, N, seed=16)
    shift = randn(N, seed=17)
    for step in (0.4, 1.0, 3.0):
        assert torch.allclose(Translated(f, shift)(x, step), shift + f(x - shift, step))
        assert torch.allclose(Scaled(f, 2.5)(x, step), f(x, 2.5 * step))
        a = -1.7  # prox_{t f(a .)}(x) = prox_{t a^2 f}(a x) / a
        assert torch.allclose(Dilated(f, a)(x, step), f(a * x, a * a * step) / a)
    assert torch.allclose(Scaled(f, 2.5).value(x), 2.5 * f.value(x))
    assert torch.allclose(Translated(f, shift).value(x + shift), f.value(x))


def test_dilated_matches_grid_and_flags():
    g = Dilated(Box(0.0, 1.0), 2.0)  # the set {y : 0 <= 2y <= 1} = [0, 0.5]
    assert torch.allclose(g(t([[-1.0, 0.2, 3.0]])), t([[0.0, 0.2, 0.5]]))
    assert g.is_indicator and g.separable
    assert not Scaled(L2Ball(), 2.0).separable and Scaled(L2Ball(), 2.0).is_indicator


def test_separable_sum_blockwise_and_box_both_ways():
    blocks = [(1, Box(0, 10)), (2, L1(1.0)), (2, L2Ball(0.5))]
    f = SeparableSum(blocks)
    x = randn(7, 2, N, seed=18, scale=6.0)
    step = 0.2 + torch.rand(7, dtype=D)
    expected = torch.cat([Box(0, 10)(x[..., :1], step), L1(1.0)(x[..., 1:3], step),
                          L2Ball(0.5)(x[..., 3:], step)], dim=-1)
    assert torch.allclose(f(x, step), expected)
    value = Box(0, 10).value(x[..., :1]) + L1().value(x[..., 1:3]) + L2Ball(0.5).value(x[..., 3:])
    assert torch.equal(f.value(x), value)
    assert not f.is_indicator and not f.separable
    first_only = SeparableSum([(1, Box(0.0, 10.0)), (N - 1, Zero())])
    as_box = Box([0.0] + [-INF] * (N - 1), [10.0] + [INF] * (N - 1))
    assert torch.equal(first_only(x), as_box(x))
    assert torch.equal(first_only.value(x), as_box.value(x))
    with pytest.raises(ValueError, match="cover 5"):
        f(torch.zeros(2, 4, dtype=D))


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("make,match", [
    (lambda: L2Ball(-1), r"radius must be > 0, got -1"),
    (lambda: L2Ball(1.0, center=[0.0, INF]), "center must be finite"),
    (lambda: L1(-0.1), "weight must be >= 0"),
    (lambda: Simplex(0.0), "total must be > 0"),
    (lambda: ElasticNet(1.0, -2.0), "l2 must be >= 0"),
    (lambda: ElasticNet(float("nan"), 1.0), "l1 must be >= 0"),
    (lambda: AsymmetricQuadratic(-1.0, 1.0), "positive must be >= 0"),
    (lambda: AsymmetricQuadratic(1.0, "a"), "negative must be a real number"),
    (lambda: Box(1.0, 0.0), "lower must be <= upper"),
    (lambda: Box([0.0, 1.0], [1.0]), "same length"),
    (lambda: Box(INF, None), "lower must be < \\+inf"),
    (lambda: Box([[0.0]], 1.0), "lower must be a scalar or 1-D"),
    (lambda: negative_part_penalty(2.0), r"xi must be in \[0, 2\)"),
    (lambda: negative_part_penalty(-0.1), "xi must be in"),
    (lambda: elliptic_potential(1.5), "xi must be <= 1"),
    (lambda: Scaled(L1(), 0.0), "alpha must be > 0"),
    (lambda: Scaled("L1", 1.0), "f must be a Prox"),
    (lambda: Translated(L1(), [0.0, INF]), "shift must be finite"),
    (lambda: Dilated(L1(), 0.0), "a must be != 0"),
    (lambda: SeparableSum([]), "at least one"),
    (lambda: SeparableSum([(0, L1())]), "size must be an int > 0"),
    (lambda: SeparableSum([(2, L1(), 3)]), "must be a pair"),
    (lambda: SeparableSum([(2, 3.0)]), "must be a Prox"),
])
def test_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_is_abstract_and_flags():
    with pytest.raises(TypeError):
        Prox()
    flags = {name: (MAPS[name]().is_indicator, MAPS[name]().separable) for name in MAPS}
    assert flags["simplex"] == (True, False) and flags["l1"] == (False, True)
    assert flags["sepsum"] == (False, False) and flags["translated"] == (True, True)
