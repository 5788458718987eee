"""Operator models: a registry by name, and checkpoints as safetensors weights + JSON metadata.

Every model maps instance parameters theta (batch, P) to values at the family's evaluation points
(batch, points) through `values(theta)`; models that work in the family's basis also expose
`coefficients(theta)` (batch, R). Constructor keywords are recorded, so `from_checkpoint(run_dir)`
rebuilds the model with no code from the user. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..errors import InputError
from ..families import Family, get_family


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over `path`."""
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(model: OperatorModel, folder: Path, stem: str = "model") -> None:
    """folder/stem.safetensors + folder/stem.json (with the sha256 of the weights)."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path = folder / f"{stem}.safetensors"
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, weights_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    meta = model.metadata() | {"weights_sha256": digest}
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
        cls_name, kwargs = meta["class"], meta["init_kwargs"]
        family_name, family_config = meta["family"], meta["family_config"]
    except (ValueError, KeyError, TypeError):
        raise InputError(str(meta_path), None, "", "malformed checkpoint metadata") from None
    if family is None:
        family = get_family(family_name, **family_config)
    elif family.name != family_name:
        raise InputError("family", family.name, "", f"the checkpoint was trained on {family_name}")
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise InputError(str(weights_path), None, "", "weights do not match their recorded sha256")
    model = build_model(cls_name, family, **kwargs)
    try:
        state = load_file(str(weights_path))
        model.load_state_dict(state)
    except Exception as error:  # safetensors raises several types on corrupt files
        raise InputError(str(weights_path), None, "", f"unreadable weights ({type(error).__name__})") from None
    return model.to(device)
