"""The FNO on a convex family answered on a 2-D tensor grid (elliptic-pde-2d): the 2-D spectral layer
against an explicit DFT, the mode cut-off, the grid recognition and its refusals, a few training
steps, checkpoints, and the 1-D path left as it was."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from convexop.errors import InputError
from convexop.families import get_family
from convexop.models import build_model, from_checkpoint, save_model
from convexop.models.fno import SpectralConvolution, grid_view, tensor_grid_axes

SMALL = {"width": 8, "modes": 5, "depth": 2}


@pytest.fixture(scope="module")
def family():
    return get_family("elliptic-pde-2d", rank=4)


def explicit_dft_reference(v: np.ndarray, weight: np.ndarray, modes: int) -> np.ndarray:
    """K v by sums over the grid: the 2-D DFT at the kept frequencies (k0 in 0..m0-1 and -m0..-1,
    k1 in 0..m1-1), mixed by the weight, and the real inverse with the conjugate-symmetric half
    counted twice (once for k1 = 0 and the Nyquist column of an even n1)."""
    batch, _, n0, n1 = v.shape
    m0, m1 = min(modes, n0 // 2), min(modes, n1 // 2 + 1)
    x0, x1 = np.arange(n0), np.arange(n1)
    out = np.zeros((batch, weight.shape[1], n0, n1))
    for row, k0 in enumerate(list(range(m0)) + list(range(-m0, 0))):
        slot = row if k0 >= 0 else 2 * modes + k0  # where the weight keeps frequency k0
        for k1 in range(m1):
            wave = np.exp(-2j * np.pi * (k0 * x0[:, None] / n0 + k1 * x1[None, :] / n1))  # (n0, n1)
            coefficient = (v * wave).sum(axis=(-2, -1))  # (batch, channels)
            mixed = coefficient @ weight[:, :, slot, k1]  # (batch, out)
            count = 1.0 if k1 == 0 or 2 * k1 == n1 else 2.0
            out += count * np.real(mixed[:, :, None, None] * np.conj(wave)) / (n0 * n1)
    return out


@pytest.mark.parametrize("shape, modes", [((10, 8), 3), ((9, 7), 4), ((6, 12), 5)])
def test_2d_spectral_layer_equals_an_explicit_dft(shape, modes):
    layer = SpectralConvolution(3, modes, 2, "standard", 1.0)  # float32, as the models run
    v = torch.randn(2, 3, *shape)
    weight = torch.view_as_complex(layer.weight.detach()).numpy().astype(np.complex128)
    with torch.no_grad():
        out = layer(v).numpy()
    expected = explicit_dft_reference(v.numpy().astype(np.float64), weight, modes)
    assert np.abs(out - expected).max() < 2e-5 * np.abs(expected).max()


def test_truncation_keeps_exactly_the_kept_frequencies():
    """Kept: k1 = 0..modes-1 and k0 = -modes..modes-1 (both signs on the first axis); the output of
    a real layer also carries, in the k1 = 0 column, the mirror k0 = modes of k0 = -modes."""
    n0, n1, modes = 16, 12, 3
    layer = SpectralConvolution(2, modes, 2, "standard", 1.0)
    with torch.no_grad():
        out = layer(torch.randn(4, 2, n0, n1))
    spectrum = np.abs(np.fft.rfft2(out.numpy()))  # (4, 2, n0, n1 // 2 + 1)
    k0 = np.fft.fftfreq(n0, 1.0 / n0)[:, None]
    k1 = np.arange(n1 // 2 + 1)[None, :]
    kept = (k1 < modes) & (k0 >= -modes) & (k0 < modes)
    possible = kept | ((k1 == 0) & (k0 == modes))
    assert spectrum[..., ~possible].max() < 1e-5 * spectrum.max()
    assert (spectrum[..., kept].min(axis=0) > 1e-4 * spectrum.max()).all()  # every kept one is used
    # plane waves cos(2 pi (k0 x0 / n0 + k1 x1 / n1)) with k1 > 0 carry that one frequency of the half spectrum
    x0, x1 = np.arange(n0)[:, None], np.arange(n1)[None, :]
    for k, inside in (((2, 1), True), ((-3, 2), True), ((0, 2), True), ((3, 1), False), ((0, 3), False),
                      ((-4, 1), False), ((7, 5), False)):
        wave = torch.as_tensor(np.cos(2 * np.pi * (k[0] * x0 / n0 + k[1] * x1 / n1)), dtype=torch.float32)
        with torch.no_grad():
            response = layer(wave.expand(1, 2, n0, n1)).abs().max().item()
        assert (response > 1e-3) == inside, (k, response)


def test_the_family_points_are_recognised_as_a_tensor_grid(family):
    axes = tensor_grid_axes(np.asarray(family.points))
    assert [len(a) for a in axes] == [64, 64]
    assert np.allclose(axes[0], np.linspace(-5, 5, 64)) and np.allclose(axes[1], np.linspace(-5, 5, 64))
    model = build_model("fno", family, **SMALL)
    assert model.dims == 2 and tuple(model.coordinates.shape) == (64, 64, 2)
    theta = torch.as_tensor(family.sample(3, np.random.default_rng(1)), dtype=torch.float32)
    out = model.values(theta)
    assert out.shape == (3, 4096) and torch.isfinite(out).all() and out.std(0).mean() > 0
    # the values are the grid flattened with u1 slowest: row i * 64 + j is (u1_i, u2_j)
    direct = model.forward(model.make_input(theta), model.coordinates)
    assert torch.equal(direct.reshape(3, -1), out)
    assert np.allclose(np.asarray(family.points).reshape(64, 64, 2)[5, 7], [axes[0][5], axes[1][7]])


@pytest.mark.parametrize("kind", ["scattered", "u2 slowest", "non-uniform"])
def test_other_2d_points_are_refused_in_one_line(kind):
    axis = np.linspace(-1.0, 1.0, 6)
    if kind == "scattered":
        points = np.random.default_rng(0).uniform(-1, 1, (36, 2))
    elif kind == "u2 slowest":
        points = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    else:
        bent = axis**3
        points = np.stack(np.meshgrid(bent, axis, indexing="ij"), -1).reshape(-1, 2)
    assert tensor_grid_axes(points) is None
    stand_in = types.SimpleNamespace(name="scattered-2d", grid_axes=None, points=points, theta_size=2)
    with pytest.raises(InputError, match="not a uniform 2-D tensor grid") as error:
        grid_view(stand_in)
    assert len(str(error.value).strip().splitlines()) == 1


def test_a_few_training_steps_lower_the_loss(family):
    """Targets shaped like elliptic-pde-2d's (a dipole a (u1 - c1) exp(-|u - c|^2) / (1 + nu)), no
    reference solves: the loss falls within 25 Adam steps."""
    model = build_model("fno", family, **SMALL)
    theta = torch.as_tensor(family.sample(8, np.random.default_rng(2)), dtype=torch.float32)
    u = torch.as_tensor(np.asarray(family.points), dtype=torch.float32)
    d1, d2 = u[None, :, 0] - theta[:, 2:3], u[None, :, 1] - theta[:, 3:4]
    target = theta[:, 1:2] * d1 * torch.exp(-(d1**2 + d2**2)) / (1 + theta[:, 0:1])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        loss = ((model.values(theta) - target) ** 2).mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


def test_checkpoint_round_trip_gives_identical_outputs(family, tmp_path):
    model = build_model("fno", family, **SMALL)
    with torch.no_grad():  # move the spectral weights off their initial draw
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(model, tmp_path)
    loaded = from_checkpoint(tmp_path, family=family)
    theta = torch.as_tensor(family.sample(4, np.random.default_rng(3)), dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(model.values(theta), loaded.values(theta))
    assert loaded.dims == 2 and loaded.init_kwargs == model.init_kwargs


def test_1d_families_keep_the_1d_path():
    heat = get_family("heat-pde")
    model = build_model("fno", heat, **SMALL)
    assert model.dims == 1 and model.spectral[0].weight.shape == (8, 8, 5, 2)
    assert tuple(model.coordinates.shape) == (len(heat.points), 1)
    out = model.values(torch.as_tensor(heat.sample(2, np.random.default_rng(0)), dtype=torch.float32))
    assert out.shape == (2, len(heat.points))
    ragged = types.SimpleNamespace(name="ragged", grid_axes=None, points=np.array([0.0, 0.1, 0.3]), theta_size=1)
    with pytest.raises(InputError, match="no uniform 1-D or 2-D grid"):
        grid_view(ragged)
