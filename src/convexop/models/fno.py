"""Fourier neural operator (Li et al. 2021) in one and two dimensions.

    v_0 = lift([a(x), features(x)])                                  pointwise, -> `width` channels
    v_l = act( K_l v_{l-1} + W_l v_{l-1} + b_l )   l = 1..depth       (no act after the last layer)
    out = scale * Q(v_depth),   Q: width -> projection_width -> 1 with act in between
    K v = irfft( R . rfft(v) ) keeping the lowest `modes` frequencies per axis (both signs on the
    first axis in 2-D), R complex (stored as real pairs so that Hessian-vector products work).

Inputs on the family's output grid: for the operator-learning sets the input function (broadcast
along t for diffusion-reaction); for convex families with uniform 1-D points (heat-pde) or points
on a uniform 2-D tensor grid, u1 varying slowest (elliptic-pde-2d: 64 x 64), the instance parameters
broadcast as constant channels (other points are refused). Channels are standardised under the family's
training law (one scalar pair per function channel, so the statistics do not depend on the grid).
Coordinate features: (x - low) / (high - low), or (cos, sin)(2 pi k x), k = 1, 2 on periodic axes.
Non-periodic axes are zero-padded by the fraction `padding` before the Fourier layers and cropped
after. Nothing in the weights depends on the grid size: `forward(inputs, coordinates)` runs at any
resolution (the mode cut-off is clipped to what the grid carries), and `on_family` moves a model
trained on burgers at 256 points to burgers at 1024 (zero-shot super-resolution).
Scalings: "standard" (dense layers Glorot-normal; R with real and imaginary parts
N(0, 1 / (2 width))), or "ntk" (every weight N(0, init_std^2), each layer scaled by 1/sqrt(fan_in)).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..families import Family
from .base import OperatorModel
from .layers import (
    ACTIVATIONS,
    Dense,
    check,
    check_common,
    coordinate_features,
    coordinate_layout,
    input_statistics,
)

EVAL_ELEMENTS = 1 << 24  # largest batch * grid * width processed at once without gradients


def half_spectrum(n: int, modes: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Real matrices of the truncated real DFT along an axis of n points, kept k = 0..m-1:
    forward (n, 2m) with interleaved columns cos, -sin (so `v @ forward` viewed as complex is the
    DFT), and inverse (2m, n) with rows w_k cos / n, -w_k sin / n (w_k = 1 for k = 0 and the
    Nyquist frequency, 2 otherwise), so that `view_as_real(Y) @ inverse` is irfft of the kept Y."""
    m = min(modes, n // 2 + 1)
    angle = 2.0 * math.pi * torch.arange(n, dtype=torch.float64)[:, None] * torch.arange(m, dtype=torch.float64) / n
    weights = torch.full((m,), 2.0, dtype=torch.float64)
    weights[0] = 1.0
    if n % 2 == 0 and m - 1 == n // 2:
        weights[-1] = 1.0
    forward = torch.stack([torch.cos(angle), -torch.sin(angle)], dim=-1).reshape(n, 2 * m)
    inverse = (forward * torch.repeat_interleave(weights, 2) / n).T.contiguous()
    return forward.to(device=device, dtype=torch.float32), inverse.to(device=device, dtype=torch.float32)


def signed_fourier(n: int, modes: int, device) -> torch.Tensor:
    """(n, 2 m) complex matrix exp(-2 pi i x k / n) for k = 0..m-1, -m..-1 (m = min(modes, n // 2))."""
    m = min(modes, n // 2)
    k = torch.arange(m, dtype=torch.float64)
    frequencies = torch.cat([k, k - m])
    angle = 2.0 * math.pi * torch.arange(n, dtype=torch.float64)[:, None] * frequencies / n
    return torch.exp(-1j * angle).to(device=device, dtype=torch.complex64)


class SpectralConvolution(torch.nn.Module):
    """K v for channel-first v: (batch, width, *grid) -> same shape.

    Only the kept modes are ever computed: the truncated DFT and its inverse are matrix products
    with (n x modes) cosine/sine (last axis) and complex Fourier (first axis in 2-D) matrices,
    cached per grid size, so the large tensors stay real. This equals rfft -> keep -> irfft to
    rounding (a test checks it) and is 2-3x faster than full FFTs on a CPU when modes << n.
    """

    def __init__(self, width: int, modes: int, dims: int, scaling: str, init_std: float) -> None:
        super().__init__()
        self.modes, self.dims = modes, dims
        shape = (width, width, modes, 2) if dims == 1 else (width, width, 2 * modes, modes, 2)
        std = init_std if scaling == "ntk" else 1.0 / math.sqrt(2 * width)
        self.weight = torch.nn.Parameter(torch.randn(shape) * std)
        self.multiplier = 1.0 / math.sqrt(width) if scaling == "ntk" else 1.0
        self._matrices: dict = {}

    def _cached(self, kind: str, n: int, device):
        key = (kind, n, str(device))
        if key not in self._matrices:
            self._matrices[key] = half_spectrum(n, self.modes, device) if kind == "half" else \
                signed_fourier(n, self.modes, device)
        return self._matrices[key]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        weight = torch.view_as_complex(self.weight) * self.multiplier
        forward, inverse = self._cached("half", v.shape[-1], v.device)
        m1 = forward.shape[1] // 2
        spectrum = torch.view_as_complex((v @ forward).unflatten(-1, (m1, 2)))  # (b, c, [n0,] m1)
        if self.dims == 1:
            mixed = torch.einsum("bik,iok->bok", spectrum, weight[..., :m1])
            return torch.view_as_real(mixed).flatten(-2) @ inverse
        n0 = v.shape[-2]
        first = self._cached("signed", n0, v.device)  # (n0, 2 m0)
        m0 = first.shape[1] // 2
        spectrum = spectrum.transpose(-1, -2).contiguous() @ first  # (b, c, m1, 2 m0)
        kept = torch.cat([weight[:, :, :m0, :m1], weight[:, :, 2 * self.modes - m0:, :m1]], dim=2)
        mixed = torch.einsum("bilk,iokl->bolk", spectrum, kept)
        back = (mixed @ (first.conj().T / n0)).transpose(-1, -2).contiguous()  # (b, o, n0, m1)
        return torch.view_as_real(back).flatten(-2) @ inverse


def pointwise(layer: Dense, v: torch.Tensor) -> torch.Tensor:
    """A dense layer applied at every grid point of channel-first v (a 1x1 convolution)."""
    flat = v.reshape(v.shape[0], v.shape[1], -1)
    out = torch.matmul(layer.weight * layer.multiplier, flat) + layer.bias[:, None]
    return out.reshape(v.shape[0], -1, *v.shape[2:])


def grid_coordinates(axes: list[np.ndarray], layout: list[tuple[float, float, bool]]) -> torch.Tensor:
    """Coordinate features on the grid spanned by `axes`: (*grid, features), float32."""
    per_axis = [coordinate_features(axis, periodic, low, high) for axis, (low, high, periodic) in zip(axes, layout)]
    grids = []
    shape = tuple(len(a) for a in axes)
    for j, features in enumerate(per_axis):
        view = [1] * len(axes) + [features.shape[1]]
        view[j] = shape[j]
        grids.append(np.broadcast_to(features.reshape(view), shape + (features.shape[1],)))
    return torch.as_tensor(np.concatenate(grids, axis=-1), dtype=torch.float32)


def uniform(axis: np.ndarray) -> bool:
    """A strictly increasing axis of equal steps (to a relative 1e-6), or a single point."""
    gaps = np.diff(axis)
    return len(axis) == 1 or (bool(np.all(gaps > 0)) and bool(np.allclose(gaps, gaps[0], rtol=1e-6)))


def tensor_grid_axes(points: np.ndarray) -> list[np.ndarray] | None:
    """The two axes (u1, u2) of 2-D points that form a tensor grid of uniform axes with u1 varying
    slowest (points[i * n2 + j] = (u1_i, u2_j)), else None."""
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 4:
        return None
    n2 = int(np.argmax(points[:, 0] != points[0, 0])) or len(points)  # length of the first run of u1
    if n2 < 2 or len(points) % n2 or len(points) // n2 < 2:
        return None
    first, second = points[::n2, 0], points[:n2, 1]
    grid = np.stack(np.meshgrid(first, second, indexing="ij"), axis=-1).reshape(-1, 2)
    scale = max(1.0, float(np.abs(points).max()))
    if not (uniform(first) and uniform(second) and np.allclose(grid, points, rtol=0.0, atol=1e-9 * scale)):
        return None
    return [first, second]


def grid_view(family: Family):
    """(axes, layout, make_input, channels, function_input) of a family for the FNO. Convex families
    answer on uniform 1-D points or on a uniform 2-D tensor grid (u1 slowest); their instance
    parameters enter as constant channels."""
    axes = family.grid_axes
    if axes is not None:
        return list(axes), coordinate_layout(family), family.grid_input, 1, True
    points = np.asarray(family.points, dtype=np.float64)
    if points.ndim == 2 and points.shape[1] > 1:
        axes = tensor_grid_axes(points)
        if axes is None:
            raise InputError("--model", "fno", "", f"{family.name} answers at {points.shape[1]}-D points that are "
                             "not a uniform 2-D tensor grid with u1 varying slowest (FNO needs one, or a uniform "
                             "1-D grid); use geo, deeponet or mlp")
        shape = tuple(len(a) for a in axes)
        return axes, coordinate_layout(family), \
            lambda theta: theta[:, :, None, None].expand(-1, -1, *shape), family.theta_size, False
    if points.ndim != 1 or len(points) < 2 or not uniform(points):
        raise InputError("--model", "fno", "", f"{family.name} has no uniform 1-D or 2-D grid of evaluation "
                         "points (FNO needs one); use deeponet or mlp")
    size = len(points)
    return [points], coordinate_layout(family), lambda theta: theta[:, :, None].expand(-1, -1, size), \
        family.theta_size, False


class FNO(OperatorModel, name="fno"):
    def __init__(self, family: Family, width: int = 32, modes: int = 16, depth: int = 4,
                 activation: str = "gelu", projection_width: int = 0, padding: float = 0.125,
                 scaling: str = "standard", init_std: float = 1.0) -> None:
        check_common(width, depth, activation, scaling, init_std, max_width=4096, max_depth=32)
        check(isinstance(modes, int) and 1 <= modes <= 4096, "modes", modes, "integers in [1, 4096]")
        check(isinstance(projection_width, int) and 0 <= projection_width <= 100_000, "projection_width",
              projection_width, "integers in [0, 100000] (0: twice the width)")
        check(0.0 <= padding <= 1.0, "padding", padding, "[0, 1]")
        super().__init__(family, width=width, modes=modes, depth=depth, activation=activation,
                         projection_width=projection_width, padding=padding, scaling=scaling, init_std=init_std)
        axes, self.layout, self.make_input, channels, function_input = grid_view(family)
        self.dims = len(axes)
        check(self.dims in (1, 2), "--model", "fno", "families with 1-D or 2-D grids")
        self.padding = padding
        coordinates = grid_coordinates(axes, self.layout)
        self.register_buffer("coordinates", coordinates, persistent=False)
        mean, std = input_statistics(family, per_feature=not function_input)
        self.register_buffer("input_mean", torch.as_tensor(mean))
        self.register_buffer("input_std", torch.as_tensor(std))
        self.register_buffer("output_scale", torch.tensor(float(family.target_scale)))
        self.activation = ACTIVATIONS[activation]
        self.lift = Dense(channels + coordinates.shape[-1], width, scaling, init_std)
        self.spectral = torch.nn.ModuleList(SpectralConvolution(width, modes, self.dims, scaling, init_std)
                                            for _ in range(depth))
        self.pointwise = torch.nn.ModuleList(Dense(width, width, scaling, init_std) for _ in range(depth))
        hidden = projection_width or 2 * width
        self.project_hidden = Dense(width, hidden, scaling, init_std)
        self.project_out = Dense(hidden, 1, scaling, init_std)

    def forward(self, inputs: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
        """inputs (batch, channels, *grid), coordinates (*grid, features) -> (batch, *grid)."""
        batch, grid = inputs.shape[0], inputs.shape[2:]
        shape = (-1,) + (1,) * len(grid)
        x = (inputs - self.input_mean.view(shape)) / self.input_std.view(shape)
        features = coordinates.movedim(-1, 0).expand(batch, -1, *grid)
        v = pointwise(self.lift, torch.cat([x, features], dim=1))
        pads = [0 if periodic else math.ceil(self.padding * n) for n, (_, _, periodic) in zip(grid, self.layout)]
        if any(pads):
            spec = []  # F.pad lists the last axis first
            for p in reversed(pads):
                spec += [0, p]
            v = torch.nn.functional.pad(v, spec)
        for index, (spectral, dense) in enumerate(zip(self.spectral, self.pointwise)):
            v = spectral(v) + pointwise(dense, v)
            if index < len(self.spectral) - 1:
                v = self.activation(v)
        if any(pads):
            v = v[(slice(None), slice(None)) + tuple(slice(0, n) for n in grid)]
        out = pointwise(self.project_out, self.activation(pointwise(self.project_hidden, v)))[:, 0]
        return self.output_scale * out

    def on_family(self, family: Family) -> FNO:
        """The same operator (same weights) on another configuration of the family, e.g. burgers
        at 1024 points for a model trained at 256 (checkpoints are tied to their configuration)."""
        if family.name != self.family.name:
            raise InputError("family", family.name, "", f"the model was trained on {self.family.name}")
        model = FNO(family, **self.init_kwargs)
        model.load_state_dict(self.state_dict())
        return model.to(self.input_mean.device)

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        inputs = self.make_input(theta)
        chunk = len(theta)
        if not torch.is_grad_enabled():
            per_sample = max(1, self.coordinates[..., 0].numel() * max(self.lift.weight.shape[0], 1) * 4)
            chunk = max(1, EVAL_ELEMENTS // per_sample)
        outputs = [self.forward(inputs[start:start + chunk], self.coordinates)
                   for start in range(0, len(theta), chunk)]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return out.reshape(len(theta), -1)
