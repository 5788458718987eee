"""The classical operator-learning data sets as (supervised, non-convex) families.

Each maps an input function given at sensors (theta, (batch, m)) to an output function at the
family's points; the targets come from our own solvers (references/operator_solvers.py):
- `antiderivative`: u ~ GRF(RBF, l = 0.2) on [0, 1] at 100 equispaced sensors; s(x) = int_0^x u
  at the same 100 points (Lu et al. 2021; DeepXDE's aligned example).
- `diffusion-reaction`: s_t = 0.01 s_xx + 0.01 s^2 + u(x) on [0, 1]^2, zero initial and boundary
  values, u from the same field at 100 sensors; s on the 100 x 100 grid (x-major; `stride`
  subsamples it). The solver runs on a grid `refine` times finer (default 4: estimated max error
  5e-5; refine = 1 is the canonical 100 x 100 solver, max error ~1e-3).
- `burgers`: u_t + (u^2/2)_x = 0.1 u_xx, periodic on [0, 1), u_0 ~ N(0, 625 (-Laplace + 25 I)^-2);
  learn u_0 -> u(., 1). Solved pseudo-spectrally at 1024 points; `resolution` 256 / 512 / 1024
  subsamples both input and output (the same functions at every resolution for a given seed).
  Note: at nu = 0.1 on [0, 1] the first mode decays by e^{-4 pi^2 nu} ~ 0.019, so u(., 1) is ~60
  times smaller than u_0 (RMS 0.0099 against 0.60); errors are reported relative.

These families have no convex structure (no g, no prox_f): the GEO cannot train on them; DeepONet,
FNO and MLP can. The basis is nodal (the identity on the points), so `decode`/`project` are the
identity. Models read the grid view `grid_axes`, `grid_periodic`, `grid_input(theta)` and the
typical output size `target_scale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InputError
from ..references import operator_solvers
from ..references.random_fields import RBFField, periodic_field
from .base import Family
from .parameters import Parameter

DATA_SEED = 1  # "seed 001" of DESIGN.md


@dataclass
class NodalBasis:
    """The identity basis on the points: coefficient j is the value at point j."""

    points: np.ndarray

    @property
    def rank(self) -> int:
        return len(self.points)

    @property
    def labels(self) -> list[str]:
        if self.points.ndim == 1:
            return [f"s({p:.4g})" for p in self.points]
        return ["s(" + ",".join(f"{c:.4g}" for c in p) + ")" for p in self.points]


class OperatorProblem(Family):
    """Base of the operator-learning families: function in (at sensors), function out (at points)."""

    exact = False
    function_input: ClassVar[bool] = True
    target_scale: ClassVar[float] = 1.0

    def __init__(self, sensor_points: np.ndarray, grid_axes: list[np.ndarray], grid_periodic: list[bool],
                 parameter: Parameter, **config: Any) -> None:
        torch.nn.Module.__init__(self)  # no basis matrices: the basis is nodal
        self.config = dict(config)
        self.sensors = np.asarray(sensor_points, dtype=np.float64)
        self.grid_axes = [np.asarray(a, dtype=np.float64) for a in grid_axes]
        self.grid_periodic = list(grid_periodic)
        self.grid_shape = tuple(len(a) for a in self.grid_axes)
        mesh = np.meshgrid(*self.grid_axes, indexing="ij")
        points = mesh[0].reshape(-1) if len(mesh) == 1 else np.stack([m.reshape(-1) for m in mesh], axis=1)
        self.basis = NodalBasis(points)
        self.parameters = (parameter,)  # instance attribute: its shape depends on the configuration

    # ----- the grid view used by FNO (and the trunk of DeepONet) --------------------------
    def grid_input(self, theta: torch.Tensor) -> torch.Tensor:
        """(batch, m) sensor values -> (batch, 1, *grid_shape) input channel on the output grid."""
        return theta[:, None, :]

    # ----- no convex structure -----------------------------------------------------------
    def _no_structure(self, *args: Any) -> torch.Tensor:
        raise InputError("--model", "geo", "", f"{self.name} is an operator-learning data set without "
                         "convex structure (no g, no prox_f); train deeponet, fno or mlp on it")

    g = activation = f_value = _no_structure

    @property
    def step_hint(self) -> float:
        """Read by the GEO's constructor before it initialises its weights: refusing here stops
        `train --model geo` before any file is written (otherwise the first g call refuses)."""
        return self._no_structure()

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def project(self, values: torch.Tensor) -> torch.Tensor:
        return values

    @classmethod
    def default_training(cls) -> dict[str, Any]:
        return {"training": {"data_seed": DATA_SEED, "lr": 1e-3, "schedule": "cosine", "eval_every": 250,
                             "checkpoint_every": 1000}}


def _check(ok: bool, field: str, value: object, domain: str) -> None:
    if not ok:
        raise InputError(field, value, domain)


class Antiderivative(OperatorProblem):
    name = "antiderivative"
    target_scale = 0.5  # RMS of s: 0.43
    reference_method = "exact integral of the not-a-knot cubic spline through the sensor values"

    def __init__(self, sensors: int = 100, length_scale: float = 0.2) -> None:
        _check(isinstance(sensors, int) and 4 <= sensors <= 10_000, "sensors", sensors, "integers in [4, 10000]")
        _check(0.01 <= length_scale <= 10, "length_scale", length_scale, "[0.01, 10]")
        x = np.linspace(0.0, 1.0, sensors)
        parameter = Parameter("u", shape=(sensors,), law=f"GRF on [0, 1], RBF kernel, length scale {length_scale:g}",
                              description=f"input function at {sensors} equispaced sensors on [0, 1]")
        super().__init__(x, [x], [False], parameter, sensors=sensors, length_scale=float(length_scale))
        self.field = RBFField(x, length_scale)

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        _check(law == "train", "law", law, "train")
        return self.field.sample(n, rng)

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        out = operator_solvers.antiderivative(theta, self.sensors)
        if progress is not None:
            progress(len(theta))
        return out

    def reference_error(self) -> float:
        return 1e-8  # spline interpolation of the l = 0.2 field; the integral itself is exact

    @classmethod
    def default_training(cls) -> dict[str, Any]:
        base = super().default_training()
        base["training"] |= {"n_instances": 1000, "test_fraction": 0.2, "batch_size": 100, "steps": 5000}
        return base | {"deeponet": {"width": 40, "depth": 2, "activation": "relu"},
                       "fno": {"width": 32, "modes": 16, "depth": 4}}


class DiffusionReaction(OperatorProblem):
    name = "diffusion-reaction"
    target_scale = 0.5  # RMS of s: 0.48
    target_dtype = np.float32  # 10,000 points per instance
    STRIDES = (1, 3, 9, 11, 33)

    def __init__(self, stride: int = 1, refine: int = 4, length_scale: float = 0.2) -> None:
        _check(stride in self.STRIDES, "stride", stride, "one of " + ", ".join(map(str, self.STRIDES)))
        _check(isinstance(refine, int) and 1 <= refine <= 16, "refine", refine, "integers in [1, 16]")
        _check(0.01 <= length_scale <= 10, "length_scale", length_scale, "[0.01, 10]")
        x = np.linspace(0.0, 1.0, 100)
        parameter = Parameter("u", shape=(100,), law=f"GRF on [0, 1], RBF kernel, length scale {length_scale:g}",
                              description="source term at 100 equispaced sensors on [0, 1]")
        axes = [x[::stride], x[::stride]]  # x and t (T = 1) share the grid
        super().__init__(x, axes, [False, False], parameter, stride=stride, refine=refine,
                         length_scale=float(length_scale))
        self.stride, self.refine = stride, refine
        self.field = RBFField(x, length_scale)

    @property
    def reference_method(self) -> str:  # type: ignore[override]
        n = 99 * self.refine + 1
        return (f"finite differences, Crank-Nicolson with Rannacher start, {n} x {n} grid, "
                f"subsampled to {self.grid_shape[0]} x {self.grid_shape[1]}")

    def grid_input(self, theta: torch.Tensor) -> torch.Tensor:
        u = theta[:, :: self.stride]
        return u[:, None, :, None].expand(-1, 1, -1, self.grid_shape[1])

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        _check(law == "train", "law", law, "train")
        return self.field.sample(n, rng)

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        n = 99 * self.refine + 1
        step = self.refine * self.stride
        chunks = []
        for start in range(0, len(theta), 200):
            block = theta[start:start + 200]
            s = operator_solvers.diffusion_reaction(block, self.sensors, nx=n, nt=n)[:, ::step, ::step]
            chunks.append(s.reshape(len(block), -1))
            if progress is not None:
                progress(len(block))
        return np.concatenate(chunks)

    def reference_error(self) -> float:
        return {1: 1.1e-3, 2: 2.5e-4}.get(self.refine, 5e-5)  # measured max error (self-convergence)

    @classmethod
    def default_training(cls) -> dict[str, Any]:
        # `train` defaults to the 34 x 34 subgrid (stride 3): the 2-D FNO on the full 100 x 100 grid
        # costs ~2 s per step of 20 on one CPU core; --set stride=1 trains on the full grid
        base = super().default_training()
        base["training"] |= {"n_instances": 600, "test_fraction": 1 / 6, "batch_size": 20, "steps": 1000}
        return base | {"family": {"stride": 3}, "training_deeponet": {"steps": 5000, "lr": 3e-3},
                       "deeponet": {"width": 100, "depth": 3, "activation": "gelu"},
                       "fno": {"width": 16, "modes": 12, "depth": 4}}


class Burgers(OperatorProblem):
    name = "burgers"
    target_scale = 0.01  # RMS of u(., 1): 0.0099
    RESOLUTIONS = (256, 512, 1024)
    SOLVER_RESOLUTION = 1024

    def __init__(self, resolution: int = 1024, viscosity: float = 0.1, time_steps: int = 200) -> None:
        _check(resolution in self.RESOLUTIONS, "resolution", resolution, "one of 256, 512, 1024")
        _check(0.001 <= viscosity <= 10, "viscosity", viscosity, "[0.001, 10]")
        _check(isinstance(time_steps, int) and 10 <= time_steps <= 100_000, "time_steps", time_steps,
               "integers in [10, 100000]")
        x = np.arange(resolution) / resolution
        parameter = Parameter("u0", shape=(resolution,), law="N(0, 625 (-Laplace + 25 I)^-2), periodic, mean 0",
                              description=f"initial value at x_j = j / {resolution}")
        super().__init__(x, [x], [True], parameter, resolution=resolution, viscosity=float(viscosity),
                         time_steps=time_steps)
        self.resolution, self.viscosity, self.time_steps = resolution, float(viscosity), time_steps

    @property
    def reference_method(self) -> str:  # type: ignore[override]
        return (f"pseudo-spectral (2/3 dealiasing) ETDRK4, {self.SOLVER_RESOLUTION} points, "
                f"{self.time_steps} steps, subsampled to {self.resolution}")

    def sample(self, n: int, rng: np.random.Generator, law: str = "train") -> np.ndarray:
        _check(law == "train", "law", law, "train")
        return periodic_field(n, self.resolution, rng)

    def reference(self, theta: np.ndarray, progress=None) -> np.ndarray:
        chunks = []
        for start in range(0, len(theta), 100):
            block = theta[start:start + 100]
            chunks.append(operator_solvers.burgers(block, self.viscosity, self.SOLVER_RESOLUTION, self.time_steps))
            if progress is not None:
                progress(len(block))
        return np.concatenate(chunks)

    def reference_error(self) -> float:
        return 3e-9 if self.time_steps >= 200 else float("nan")  # measured at 200 steps against 1600

    @classmethod
    def default_training(cls) -> dict[str, Any]:
        base = super().default_training()
        base["training"] |= {"n_instances": 1100, "test_fraction": 1 / 11, "batch_size": 20, "steps": 2000}
        return base | {"deeponet": {"width": 128, "depth": 3, "activation": "tanh"},
                       "fno": {"width": 32, "modes": 16, "depth": 4}}


OPERATOR_PROBLEMS = ("antiderivative", "diffusion-reaction", "burgers")
