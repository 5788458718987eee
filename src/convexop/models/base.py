"""Operator models: a registry by name, and checkpoints as safetensors weights + JSON metadata.

Every model maps instance parameters theta (batch, P) to values at the family's evaluation points
(batch, points) through `values(theta)`; models that work in the family's basis also expose
`coefficients(theta)` (batch, R). Constructor keywords are recorded, so `from_checkpoint(run_dir)`
rebuilds the model with no code from the user. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save

from .. import __version__
from ..errors import InputError
from ..families import Family, get_family
from ..files import atomic_write_bytes, temporary_path  # noqa: F401  (re-exported)
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

    def values(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def metadata(self) -> dict[str, Any]:
        return {"class": self.model_name, "init_kwargs": self.init_kwargs,
                "family": self.family.name, "family_config": self.family.family_config(),
                "package_version": __version__, "parameters": self.parameter_count()}


def build_model(name: str, family: Family, **kwargs: Any) -> OperatorModel:
    if name not in OperatorModel.registry:
        raise InputError("model", name, "one of " + ", ".join(sorted(OperatorModel.registry)))
    return OperatorModel.registry[name](family, **kwargs)


def save_model(model: OperatorModel, folder: Path, stem: str = "model") -> None:
    """folder/stem.safetensors + folder/stem.json (with the sha256 of the weights)."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(tensors)  # bytes: written with the usual permissions (save_file makes 0600 files)
    atomic_write_bytes(folder / f"{stem}.safetensors", weights)
    meta = model.metadata() | {"weights_sha256": hashlib.sha256(weights).hexdigest()}
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
        try:
            family = get_family(family_name, **family_config)
        except (TypeError, ValueError) as error:  # unknown or out-of-range family keywords
            raise InputError(f"{meta_path}: family_config", family_config, "",
                             f"does not build family {family_name!r} ({error})") from None
    elif family.name != family_name:
        raise InputError("family", family.name, "", f"the checkpoint was trained on {family_name}")
    elif _canonical(family.family_config()) != _canonical(family_config):
        raise InputError("family_config", family.family_config(), "",
                         f"the checkpoint was trained on {family_name} with {family_config}")
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
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
    except Exception as error:  # safetensors raises several types on corrupt files
        raise InputError(str(weights_path), None, "", f"unreadable weights ({type(error).__name__})") from None
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(state)) or sorted(
        k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape))
    if wrong:
        raise InputError(str(weights_path), None, "",
                         f"weights do not fit the recorded {cls_name} (mismatched tensors: {', '.join(wrong[:4])})")
    model.load_state_dict(state)
    return model.to(device)


def _canonical(config: dict[str, Any]) -> str:
    """Family keywords as JSON text, so a tuple and a list (as stored) compare equal."""
    return json.dumps(config, sort_keys=True, default=str)
