"""Operator models: a registry by name, and checkpoints as safetensors weights + JSON metadata.

Every model maps instance parameters theta (batch, P) to values at the family's evaluation points
(batch, points) through `values(theta)`; models that work in the family's basis also expose
`coefficients(theta)` (batch, R). Constructor keywords are recorded, so `from_checkpoint(run_dir)`
rebuilds the model with no code from the user. Nothing is ever unpickled.

Sizes are checked before anything is allocated: `check_model_size` builds the model on PyTorch's
meta device (shapes only, no memory) and refuses it when its parameters and largest activation for a
batch exceed `CONVEXOP_MAX_MODEL_BYTES` (default 2 GiB), and iteration counts such as
`inference_iterations` are bounded (`ITERATION_LIMITS`); a weights file is size-checked against the
model it should hold, then hashed in chunks, before it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save

from ..errors import InputError
from ..families import Family, get_family
from ..families.parameters import Pointwise
from ..files import atomic_write_bytes, temporary_path  # noqa: F401  (re-exported)
from ..version import __version__
from ..versioning import check_compatible


class OperatorModel(torch.nn.Module):
    """Base of every model; `class GEO(OperatorModel, name="geo")` registers it."""

    registry: ClassVar[dict[str, type[OperatorModel]]] = {}
    model_name: ClassVar[str] = ""

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name:
            cls.model_name = name
            OperatorModel.registry[name] = cls

    def __init__(self, family: Family, **init_kwargs: Any) -> None:
        super().__init__()
        self.family = family
        self.init_kwargs = dict(init_kwargs)

    has_coefficients: ClassVar[bool] = False  # answers in the family's basis (`coefficients`)
    auxiliary_loss: torch.Tensor | None = None  # a regulariser the last forward adds to the training loss

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        """theta (batch, P) -> values at the family's evaluation points (batch, points)."""
        raise NotImplementedError

    def coefficients(self, theta: torch.Tensor) -> torch.Tensor:
        """theta (batch, P) -> coefficients (batch, R), for models with `has_coefficients`."""
        raise NotImplementedError(f"{self.model_name} answers with values, not coefficients")

    def set_inference(self, start: str = "random", draws: int = 1) -> None:
        """Inference switches (the GEO's start and draws); deterministic models ignore them."""

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def metadata(self) -> dict[str, Any]:
        return {"class": self.model_name, "init_kwargs": self.init_kwargs,
                "family": self.family.name, "family_config": self.family.family_config(),
                "family_labels": self.family.labels, "family_parameters": self.family.parameter_names,
                "package_version": __version__, "parameters": self.parameter_count()}


def build_model(name: str, family: Family, **kwargs: Any) -> OperatorModel:
    if name not in OperatorModel.registry:
        raise InputError("model", name, "one of " + ", ".join(sorted(OperatorModel.registry)))
    return OperatorModel.registry[name](family, **kwargs)


DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3
ITERATION_LIMITS = {"inference_iterations": 100_000, "phantom_steps": 10_000}  # model keywords
# tensors of the largest per-instance size alive at once in a forward: 4.3-5.5 measured on the built-in
# families (benchmarks/elliptic_2d_scale.py sizes; tests/test_fast_path.py keeps it honest)
LIVE_BUFFERS = 5
LOAD_BATCH = 64  # the batch a loaded model's activations are sized for (solving streams in chunks)
HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own cap on a header


class ModelTooLarge(InputError):
    """A model whose estimated memory exceeds CONVEXOP_MAX_MODEL_BYTES (refused before allocating)."""


def max_model_bytes() -> int:
    """The memory limit of one model: CONVEXOP_MAX_MODEL_BYTES (bytes), else 2 GiB."""
    text = os.environ.get("CONVEXOP_MAX_MODEL_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_MODEL_BYTES
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 2**62:  # also refuses nan
        raise InputError("CONVEXOP_MAX_MODEL_BYTES", text, "a number of bytes in [1, 2^62]")
    return int(value)


def check_iterations(kwargs: dict[str, Any], where: str = "") -> None:
    """Upper bounds on iteration counts among model keywords (a hang is refused like a bad value)."""
    for key, limit in ITERATION_LIMITS.items():
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit):
            raise InputError(f"{where}{key}", value, f"integers in [1, {limit}]")


def model_footprint(name: str, family: Family, kwargs: dict[str, Any], batch: int,
                    training: bool) -> tuple[int, int] | None:
    """(estimated bytes, bytes of the state dict): float32 parameters (times 4 when training:
    weights, gradients, Adam's two moments) plus, for `batch` instances, LIVE_BUFFERS times the
    largest per-instance activation (points, parameters, rank, width, the grid of a pointwise
    activation: its decoded values and the prox's temporaries live at once), or the GEO's (M, R)
    query points / the FNO's channels on the grid where larger.
    Building on the meta device checks every keyword and allocates nothing; None when the family's
    own code cannot run there (a user sampler making CPU tensors, say): then no estimate is made."""
    try:
        with torch.device("meta"):
            model = build_model(name, family, **kwargs)
    except (TypeError, ValueError):  # bad keywords (InputError is a ValueError): as build_model
        raise
    except Exception:  # noqa: BLE001  (user code of a family that needs real tensors)
        return None
    parameters = sum(p.numel() for p in model.parameters())
    state = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    settings = model.init_kwargs
    width = max([v for k, v in settings.items() if k.endswith("width") and isinstance(v, int)] + [1])
    points, rank = len(family.points), int(getattr(family, "rank", 1) or 1)
    grid = len(family.grid_weights()) if isinstance(family.f, Pointwise) else 0  # the activation's grid
    largest = max(points, family.theta_size, rank, width, grid, int(settings.get("basis_size", 0) or 0))
    per_instance = LIVE_BUFFERS * largest
    if name == "geo":  # the M query points of every instance: (batch, M, R)
        per_instance = max(per_instance, width * rank)
    elif name == "fno":  # channels on the grid, projection included
        per_instance = max(per_instance, max(width, 2 * int(settings.get("width", 1))) * points)
    total = 4 * parameters * (4 if training else 1) + 4 * batch * per_instance
    return total, state


def check_model_size(name: str, family: Family, kwargs: dict[str, Any], batch: int,
                     training: bool = False, where: str = "") -> int | None:
    """Refuse a model whose estimated memory exceeds the limit, before anything is allocated;
    returns the bytes of its state dict (None: not estimated). Bad keywords raise as `build_model`."""
    check_iterations(kwargs, where)
    limit = max_model_bytes()
    footprint = model_footprint(name, family, kwargs, batch, training)
    if footprint is None:
        return None
    total, state = footprint
    if total > limit:
        shown = ", ".join(f"{k} = {kwargs[k]}" for k in ("depth", "width", "modes", "basis_size") if k in kwargs)
        raise ModelTooLarge(where.rstrip(".") or "model", name, "", f"{shown + ' on ' if shown else ''}{family.name} "
                            f"(rank {getattr(family, 'rank', '?')}) needs about {total / 2**30:.3g} GiB "
                            f"({'training' if training else 'inference'}, batch {batch}), over the limit of "
                            f"{limit / 2**30:.3g} GiB; make it smaller or raise CONVEXOP_MAX_MODEL_BYTES")
    return state


def file_sha256(path: Path, limit: int) -> str:
    """sha256 of a file read in chunks, refused unread when it is larger than `limit` bytes."""
    size = Path(path).stat().st_size
    if size > limit:
        raise InputError(str(path), None, "", f"{size} bytes, more than the {limit} bytes the recorded model "
                         "can hold (tampered, or from another checkpoint)")
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: OperatorModel, folder: Path, stem: str = "model") -> None:
    """folder/stem.safetensors + folder/stem.json (with the sha256 of the weights)."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(tensors)  # bytes: written with the usual permissions (save_file makes 0600 files)
    atomic_write_bytes(folder / f"{stem}.safetensors", weights)
    meta = model.metadata() | {"weights_sha256": hashlib.sha256(weights).hexdigest()}
    source = getattr(model.family, "file_path", None)
    if source is not None:  # a family file: found again relative to the folder when both move
        meta["family_file"] = {"relative": os.path.relpath(source, folder.resolve()), "absolute": str(source)}
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(meta, indent=2).encode())


def from_checkpoint(folder: str | Path, stem: str = "model", family: Family | None = None,
                    device: str = "cpu") -> OperatorModel:
    """Rebuild a model saved by `save_model`; refuses missing, tampered or mismatched files."""
    folder = Path(folder)
    meta_path, weights_path = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise InputError("run directory", str(folder), "",
                         f"not a run: {meta_path.name} and {weights_path.name} are required")
    try:
        meta = json.loads(meta_path.read_text())
        cls_name, kwargs = meta["class"], dict(meta["init_kwargs"])
        family_name, family_config = meta["family"], dict(meta["family_config"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(str(meta_path), None, "", "malformed checkpoint metadata") from None
    check_compatible(meta.get("package_version"), f"{meta_path}: package_version")
    if family is None:
        from ..families.loading import locate

        locate(family_name, family_config.get("file_sha256"), folder, meta.get("family_file"))
        try:
            family = get_family(family_name, **family_config)
        except (TypeError, ValueError) as error:  # unknown or out-of-range family keywords
            raise InputError(f"{meta_path}: family_config", family_config, "",
                             f"does not build family {family_name!r} ({error})") from None
    elif family.user_defined and "file_sha256" in family_config and not family.source:
        # a family object built in code (e.g. imported from the very file the run was trained on by
        # `convexop train FILE.py:NAME`): accepted when its structure matches the recorded model's
        names = family.parameter_names
        if family.labels != meta.get("family_labels", family.labels) or names != meta.get("family_parameters", names):
            raise InputError("family", family.name, "", f"its variables or parameters differ from those of "
                             f"{family_name}, which the checkpoint was trained on")
    elif family.name != family_name:
        raise InputError("family", family.name, "", f"the checkpoint was trained on {family_name}")
    elif _canonical(family.family_config()) != _canonical(family_config):
        raise InputError("family_config", family.family_config(), "",
                         f"the checkpoint was trained on {family_name} with {family_config}")
    check_iterations(kwargs, f"{meta_path}: init_kwargs.")
    try:  # sizes first: nothing is allocated for a model over the limit
        state_bytes = check_model_size(cls_name, family, kwargs, LOAD_BATCH, where=f"{meta_path}: init_kwargs.")
    except ModelTooLarge:
        raise
    except (TypeError, ValueError) as error:  # InputError is a ValueError
        raise InputError(f"{meta_path}: class/init_kwargs", None, "",
                         f"do not build model {cls_name!r} ({error})") from None
    digest = file_sha256(weights_path, (state_bytes if state_bytes is not None else max_model_bytes()) + HEADER_BYTES)
    if digest != meta.get("weights_sha256"):
        raise InputError(str(weights_path), None, "", "weights do not match their recorded sha256 "
                         "(tampered, truncated or from another checkpoint)")
    try:
        model = build_model(cls_name, family, **kwargs)
    except (TypeError, ValueError) as error:  # InputError is a ValueError
        raise InputError(f"{meta_path}: class/init_kwargs", None, "",
                         f"do not build model {cls_name!r} ({error})") from None
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # noqa: BLE001  (safetensors raises several types on corrupt files)
        raise InputError(str(weights_path), None, "", f"unreadable weights ({type(error).__name__})") from None
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(state)) or sorted(
        k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape))
    if wrong:
        raise InputError(str(weights_path), None, "",
                         f"weights do not fit the recorded {cls_name} (mismatched tensors: {', '.join(wrong[:4])})")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise InputError(str(weights_path), None, "", f"tensor {broken[0]} holds non-finite values (NaN or inf); "
                         "these weights cannot answer")
    model.load_state_dict(state)
    return model.to(device)


def _canonical(config: dict[str, Any]) -> str:
    """Family keywords as JSON text, so a tuple and a list (as stored) compare equal."""
    return json.dumps(config, sort_keys=True, default=str)
