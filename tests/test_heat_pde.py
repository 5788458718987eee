import numpy as np
import torch

from convexop.families import get_family


def test_activation_is_projected_prox_of_the_negative_part_penalty():
    family = get_family("heat-pde").double()
    z = torch.randn(5, 8, dtype=torch.float64)
    y = family.decode(z)
    expected = family.project(torch.where(y < 0, 0.75 * y, y))  # y - (xi/2) min(y, 0), xi = 0.5
    assert torch.allclose(family.activation(z), expected)
    # the penalty constant c = xi / (2 - xi) = 1/3 makes y/(1+c) = 0.75 y for y < 0
    assert abs(family.f.phi.negative - 1 / 3) < 1e-15 and family.f.phi.positive == 0


def test_g_is_the_dirichlet_energy_by_quadrature():
    family = get_family("heat-pde").double()
    x = torch.randn(3, 8, dtype=torch.float64)
    theta = torch.tensor([[0.1], [0.2], [0.4]], dtype=torch.float64)
    derivative = x @ torch.as_tensor(family.basis.derivative).T
    energy = 0.5 * theta[:, 0] * (derivative**2 * family.basis_weights).sum(-1)
    assert torch.allclose(family.g(x, theta), energy)
    queries = x[:, None, :] + torch.randn(3, 4, 8, dtype=torch.float64)
    batched = family.g(queries, theta)
    assert batched.shape == (3, 4)
    assert torch.allclose(batched[:, 2], family.g(queries[:, 2], theta))


def test_argmin_of_f_plus_g_is_zero_not_the_pde_solution():
    """Why heat-pde is supervised: f + g >= 0 = (f + g)(0), while the target is far from 0."""
    family = get_family("heat-pde").double()
    x = torch.randn(100, 8, dtype=torch.float64)
    theta = torch.full((100, 1), 0.2, dtype=torch.float64)
    assert (family.objective(x, theta) > 0).all()
    assert family.objective(torch.zeros(1, 8, dtype=torch.float64), theta[:1]).item() == 0.0
    assert not family.exact and family.certificate(x, theta) is None


def test_reference_matches_the_sampled_law_and_floor():
    family = get_family("heat-pde")
    theta = family.sample(40, np.random.default_rng(0))
    assert theta.min() >= 0.01 and theta.max() <= 0.4
    targets = family.reference(theta)
    assert targets.shape == (40, 500)
    t = torch.as_tensor(targets)
    floor = family.error(family.decode(family.project(t)), t).mean().item()
    assert 1e-4 < floor < 3e-3  # the 8 unscaled Hermite functions leave ~8e-4 on average
    scaled = get_family("heat-pde", rank=12, scale=0.6)
    floor_scaled = scaled.error(scaled.decode(scaled.project(t)), t).mean().item()
    assert floor_scaled < floor / 10
