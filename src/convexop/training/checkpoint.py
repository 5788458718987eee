"""Resumable training state: model, optimiser, scheduler and RNG states as safetensors + JSON.

The optimiser's per-parameter tensors go into the safetensors file under `optimizer.<index>.<key>`,
its hyper-parameters and step counters into JSON; RNG states are uint8 tensors. No pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..models.base import atomic_write_bytes


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
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, tmp)
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, folder / f"{stem}.safetensors")
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    meta = {"param_groups": optim_state["param_groups"], "optimizer_scalars": scalars,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "weights_sha256": digest} | extra
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(meta, indent=1).encode())


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, generators: dict[str, torch.Generator],
                        stem: str = "checkpoint_last") -> dict[str, Any]:
    """Restore everything saved by `save_training_state`; returns the JSON metadata."""
    weights, meta_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if not weights.is_file() or not meta_path.is_file():
        raise InputError("--resume", str(folder), "", f"no {stem}.safetensors/.json to resume from")
    meta = json.loads(meta_path.read_text())
    if hashlib.sha256(weights.read_bytes()).hexdigest() != meta.get("weights_sha256"):
        raise InputError("--resume", str(weights), "", "checkpoint does not match its recorded sha256")
    tensors = load_file(str(weights))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
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
        generator.set_state(tensors[f"rng.{name}"])
    return meta
