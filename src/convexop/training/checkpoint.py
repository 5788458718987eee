"""Resumable training state: model, optimiser, scheduler and RNG states as safetensors + JSON.

The optimiser's per-parameter tensors go into the safetensors file under `optimizer.<index>.<key>`,
its hyper-parameters and step counters into JSON; RNG states are uint8 tensors. No pickle.

Crash safety: the JSON metadata (with the package version and a sha256 of the tensors) travels
inside the safetensors header, so one atomic rename commits the whole checkpoint; a process killed
at any instant leaves either the previous checkpoint or the new one. `checkpoint_last.json` is a
readable copy written afterwards (older checkpoints, which have only that copy, still load).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from .. import __version__
from ..errors import InputError
from ..models.base import atomic_write_bytes
from ..versioning import check_compatible

META_KEY = "convexop"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, generators: dict[str, torch.Generator],
                        extra: dict[str, Any], stem: str = "checkpoint_last") -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in optim_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = float(value)
    tensors["rng.torch"] = torch.get_rng_state()
    for name, generator in generators.items():
        tensors[f"rng.{name}"] = generator.get_state()
    meta = {"param_groups": optim_state["param_groups"], "optimizer_scalars": scalars,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "package_version": __version__, "tensors_sha256": tensors_digest(tensors)} | extra
    payload = save(tensors, metadata={META_KEY: json.dumps(meta)})
    atomic_write_bytes(folder / f"{stem}.safetensors", payload)  # the checkpoint is committed here
    digest = hashlib.sha256(payload).hexdigest()
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(meta | {"weights_sha256": digest}, indent=1).encode())


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, generators: dict[str, torch.Generator],
                        stem: str = "checkpoint_last") -> dict[str, Any]:
    """Restore everything saved by `save_training_state`; returns the JSON metadata."""
    weights, meta_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if not weights.is_file():
        raise InputError("--resume", str(folder), "", f"no {stem}.safetensors to resume from")
    try:
        with safe_open(str(weights), "pt") as stream:
            embedded = (stream.metadata() or {}).get(META_KEY)
        tensors = load_file(str(weights))
    except Exception as error:  # noqa: BLE001  (safetensors raises several types on corrupt files)
        raise InputError("--resume", str(weights), "", f"unreadable checkpoint ({type(error).__name__}: "
                         "truncated or corrupt)") from None
    try:
        if embedded is not None:
            meta = json.loads(embedded)
            intact = tensors_digest(tensors) == meta.get("tensors_sha256")
        else:  # written before the metadata moved into the header
            meta = json.loads(meta_path.read_text())
            intact = hashlib.sha256(weights.read_bytes()).hexdigest() == meta.get("weights_sha256")
        if not isinstance(meta, dict):
            raise TypeError
    except (OSError, ValueError, TypeError):
        raise InputError("--resume", str(meta_path), "", "missing or malformed checkpoint metadata") from None
    if not intact:
        raise InputError("--resume", str(weights), "", "checkpoint does not match its recorded sha256 "
                         "(tampered or corrupt)")
    if "package_version" in meta:
        check_compatible(meta["package_version"], f"{weights}: package_version")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError:
        raise InputError("--resume", str(weights), "", "the checkpoint's weights do not fit the run's model "
                         "(config.json edited after training started?)") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["optimizer_scalars"].items():
        for name, value in values.items():
            state.setdefault(int(index), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    for name, generator in generators.items():
        if f"rng.{name}" in tensors:  # absent in checkpoints written on another device type
            generator.set_state(tensors[f"rng.{name}"])
    return meta
