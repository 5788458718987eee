"""Resumable training state: model, optimiser, scheduler and RNG states as safetensors + JSON.

The optimiser's per-parameter tensors go into the safetensors file under `optimizer.<index>.<key>`,
its hyper-parameters and step counters into JSON; RNG states are uint8 tensors. No pickle.

Crash safety: the JSON metadata (with the package version and a sha256 of the tensors) travels
inside the safetensors header, so one atomic rename commits the whole checkpoint; a process killed
at any instant leaves either the previous checkpoint or the new one. `checkpoint_last.json` is a
readable copy written afterwards (older checkpoints, which have only that copy, still load).

Nothing in a checkpoint is trusted: one sha256 covers the tensors and the metadata text together
(`convexop_sha256` in the header), the file's size is checked before it is read, and every metadata
field (`step`, `order`, `cursor`, `param_groups`, `scheduler`, `optimizer_scalars`, ...) is checked
for type and range, against the live optimiser, scheduler and run settings, before any is used.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from ..errors import InputError
from ..files import file_sha256
from ..models.base import atomic_write_bytes, max_model_bytes
from ..version import __version__
from ..versioning import check_compatible
from .config import MAX_STEPS

META_KEY = "convexop"
HASH_KEY = "convexop_sha256"  # sha256 over the tensors' digest and the metadata text
HISTORY_KEYS = ("step", "train_loss", "train_mse", "test_mse", "test_relative_l2", "lr", "seconds")
CONFIG_SCHEDULER_KEYS = ("T_max", "step_size", "gamma")  # set from the run's settings, never changed


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def checkpoint_digest(tensors_sha256: str, meta_text: str) -> str:
    """The one hash of a checkpoint: its tensors (by their digest) and its metadata text."""
    return hashlib.sha256(f"{tensors_sha256}\n{meta_text}".encode()).hexdigest()


def max_checkpoint_bytes() -> int:
    """Weights, gradients-free Adam moments (2x) and RNG states of a model within the model limit."""
    return 3 * max_model_bytes() + 256 * 1024 * 1024


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
    text = json.dumps(meta)
    payload = save(tensors, metadata={META_KEY: text, HASH_KEY: checkpoint_digest(meta["tensors_sha256"], text)})
    atomic_write_bytes(folder / f"{stem}.safetensors", payload)  # the checkpoint is committed here
    digest = hashlib.sha256(payload).hexdigest()
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(meta | {"weights_sha256": digest}, indent=1).encode())


def has_training_state(folder: Path, stem: str = "checkpoint_last") -> bool:
    return (Path(folder) / f"{stem}.safetensors").is_file()


def read_training_state(folder: Path, stem: str = "checkpoint_last") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a checkpoint, its size checked before reading and its one sha256 (tensors
    and metadata) verified; the fields are not checked yet (`check_training_meta`)."""
    weights, meta_path = Path(folder) / f"{stem}.safetensors", Path(folder) / f"{stem}.json"
    if not weights.is_file():
        raise InputError("--resume", str(folder), "", f"no {stem}.safetensors to resume from")
    size, limit = weights.stat().st_size, max_checkpoint_bytes()
    if size > limit:
        raise InputError("--resume", str(weights), "", f"checkpoint of {size} bytes exceeds the limit of {limit} "
                         "bytes (3 x CONVEXOP_MAX_MODEL_BYTES + 256 MiB)")
    try:
        with safe_open(str(weights), "pt") as stream:
            header = stream.metadata() or {}
        embedded, recorded = header.get(META_KEY), header.get(HASH_KEY)
        tensors = load_file(str(weights))
    except Exception as error:  # noqa: BLE001  (safetensors raises several types on corrupt files)
        raise InputError("--resume", str(weights), "", f"unreadable checkpoint ({type(error).__name__}: "
                         "truncated or corrupt)") from None
    try:
        if embedded is not None:
            meta = json.loads(embedded)
            found = tensors_digest(tensors)
            if recorded is not None:  # one hash over the tensors and the metadata
                intact = checkpoint_digest(found, embedded) == recorded
            else:  # written before the metadata was hashed with the tensors
                intact = isinstance(meta, dict) and found == meta.get("tensors_sha256")
        else:  # written before the metadata moved into the header
            meta = json.loads(meta_path.read_text())
            intact = isinstance(meta, dict) and file_sha256(weights) == meta.get("weights_sha256")
        if not isinstance(meta, dict):
            raise TypeError
    except (OSError, ValueError, TypeError, RecursionError):
        raise InputError("--resume", str(meta_path), "", "missing or malformed checkpoint metadata") from None
    if not intact:
        raise InputError("--resume", str(weights), "", "checkpoint does not match its recorded sha256 "
                         "(tampered or corrupt)")
    return tensors, meta



# ----- field checks ------------------------------------------------------------------------------

def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else f"{type(value).__name__} of length {len(value)}" \
        if hasattr(value, "__len__") else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, value: Any, domain: str) -> None:
        raise InputError(f"{self.where}: {field}", _short(value), domain)

    def get(self, meta: dict[str, Any], field: str, domain: str, default: Any = ...) -> Any:
        if field not in meta:
            if default is not ...:
                return default
            raise InputError(f"{self.where}: {field}", None, "", f"missing (expected {domain})")
        return meta[field]

    def integer(self, meta: dict[str, Any], field: str, low: int, high: int, default: Any = ...) -> int:
        domain = f"integers in [{low}, {high}]"
        value = self.get(meta, field, domain, default)
        if not (_is_int(value) and low <= value <= high):
            self.fail(field, value, domain)
        return value

    def number(self, meta: dict[str, Any], field: str, domain: str, ok=lambda v: math.isfinite(v)) -> float:
        value = self.get(meta, field, domain)
        if not (_is_number(value) and not math.isnan(value) and ok(value)):
            self.fail(field, value, domain)
        return value


def check_training_meta(meta: dict[str, Any], where: str, steps: int | None = None, n: int | None = None,
                        batch_size: int | None = None, max_rollbacks: int | None = None) -> dict[str, Any]:
    """Check the trainer's fields of a checkpoint's metadata (type and range; against the run's
    settings where given): every problem raises InputError naming the field."""
    c = _Checker(where)
    top = steps if steps is not None else MAX_STEPS
    step = c.integer(meta, "step", 0, top)
    history = c.get(meta, "history", "a list of evaluation rows")
    if not isinstance(history, list) or len(history) > step + 1:
        c.fail("history", history, f"a list of at most step + 1 = {step + 1} evaluation rows")
    last = 0
    for number, row in enumerate(history):
        if not (isinstance(row, dict) and set(row) == set(HISTORY_KEYS)
                and all(_is_number(row[k]) for k in HISTORY_KEYS)
                and _is_int(row["step"]) and last <= row["step"] <= step):
            c.fail(f"history[{number}]", row, "a row {" + ", ".join(HISTORY_KEYS) + "} of numbers with "
                   "increasing steps <= step")
        last = row["step"]
    if steps is not None and step == steps and (not history or history[-1]["step"] != step):
        c.fail("history", history, f"a list ending with the row of step {step} (the run's last)")
    c.number(meta, "best_train", "a number (inf before the first evaluation)", ok=lambda v: True)
    c.number(meta, "elapsed", "finite seconds >= 0", ok=lambda v: math.isfinite(v) and v >= 0)
    c.number(meta, "running", "a finite number", ok=math.isfinite)
    c.integer(meta, "count", 0, step)
    order = c.get(meta, "order", "a permutation of the training instances")
    size = n if n is not None else len(order) if isinstance(order, list) else 0
    if not (isinstance(order, list) and len(order) == size and all(_is_int(i) for i in order)
            and sorted(order) == list(range(size))):
        c.fail("order", order, f"a permutation of 0..{size - 1} (the run's {size} training instances)"
               if n is not None else "a permutation of 0..len - 1")
    c.integer(meta, "cursor", 0, max(size, batch_size) if batch_size is not None else 2**62)
    c.integer(meta, "epoch", 0, step + 1, default=0)
    c.integer(meta, "rollbacks", 0, max_rollbacks if max_rollbacks is not None else 100, default=0)
    return meta


def _check_optimizer(c: _Checker, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                     optimizer: torch.optim.Optimizer) -> None:
    live = optimizer.state_dict()["param_groups"]
    groups = c.get(meta, "param_groups", "a list of optimiser parameter groups")
    if not (isinstance(groups, list) and len(groups) == len(live) and all(isinstance(g, dict) for g in groups)):
        c.fail("param_groups", groups, f"a list of {len(live)} parameter group(s)")
    for number, (group, reference) in enumerate(zip(groups, live)):
        field = f"param_groups[{number}]"
        unknown = sorted(set(group) - set(reference) - {"initial_lr"})
        if unknown:
            c.fail(f"{field}.{unknown[0]}", group[unknown[0]], "absent (not a setting of this optimiser)")
        for key in ("params", "lr"):
            if key not in group:
                c.fail(f"{field}.{key}", None, "present")
        if group["params"] != reference["params"]:
            c.fail(f"{field}.params", group["params"], f"{reference['params']} (this model's parameters)")
        for key, value in group.items():
            like = reference.get(key, 1.0)
            if key == "params":
                continue
            if key in ("lr", "initial_lr"):
                ok = _is_number(value) and math.isfinite(value) and 0 < value < 10
                domain = "(0, 10)"
            elif key == "betas":
                ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
                    _is_number(b) and 0 <= b < 1 for b in value)
                domain = "two numbers in [0, 1)"
            elif isinstance(like, bool):
                ok, domain = isinstance(value, bool), "true or false"
            elif like is None:
                ok, domain = value is None or isinstance(value, bool), "null, true or false"
            elif _is_number(like):
                ok = _is_number(value) and math.isfinite(value) and value >= 0
                domain = "a finite number >= 0"
            else:
                ok, domain = type(value) is type(like), f"a {type(like).__name__}"
            if not ok:
                c.fail(f"{field}.{key}", value, domain)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    scalars = c.get(meta, "optimizer_scalars", "an object of per-parameter counters")
    if not isinstance(scalars, dict):
        c.fail("optimizer_scalars", scalars, "an object {index: {name: number}}")
    state: dict[int, set[str]] = {}
    for index, values in scalars.items():
        if not (isinstance(index, str) and index.isdigit() and int(index) < len(parameters)):
            c.fail("optimizer_scalars", index, f"parameter indices 0..{len(parameters) - 1}")
        if not isinstance(values, dict):
            c.fail(f"optimizer_scalars.{index}", values, "an object {name: number}")
        for name, value in values.items():
            if not (_is_number(value) and math.isfinite(value) and 0 <= value <= MAX_STEPS):
                c.fail(f"optimizer_scalars.{index}.{name}", value, f"finite numbers in [0, {MAX_STEPS}]")
            state.setdefault(int(index), set()).add(name)
    for key, value in tensors.items():
        if not key.startswith("optimizer."):
            continue
        _, index, name = (key.split(".", 2) + ["", ""])[:3]
        if not (index.isdigit() and int(index) < len(parameters) and name):
            c.fail(f"tensor {key}", None, f"optimizer.<parameter index 0..{len(parameters) - 1}>.<name>")
        shape = tuple(parameters[int(index)].shape)
        if tuple(value.shape) != shape or not value.is_floating_point():
            c.fail(f"tensor {key}", list(value.shape), f"a floating tensor of shape {list(shape)}")
        state.setdefault(int(index), set()).add(name)
    if isinstance(optimizer, torch.optim.Adam):
        for index, names in state.items():
            group = next(g for g, r in zip(groups, live) if index in r["params"])
            needed = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group.get("amsgrad") else set())
            if names != needed:
                c.fail(f"optimizer state of parameter {index}", sorted(names), "{" + ", ".join(sorted(needed)) + "}")


def _check_scheduler(c: _Checker, meta: dict[str, Any], scheduler: Any, steps: int) -> None:
    saved = meta.get("scheduler")
    if scheduler is None:
        if saved is not None:
            c.fail("scheduler", _short(saved), "null (this run's schedule has no scheduler)")
        return
    live = scheduler.state_dict()
    if not isinstance(saved, dict):
        c.fail("scheduler", saved, "an object (the learning-rate scheduler's state)")
    unknown = sorted(set(saved) - set(live))
    if unknown:
        c.fail(f"scheduler.{unknown[0]}", saved[unknown[0]], "absent (not a field of this scheduler)")
    for key in ("last_epoch", "base_lrs"):
        if key not in saved:
            c.fail(f"scheduler.{key}", None, "present")
    for key, value in saved.items():
        like = live[key]
        if key in CONFIG_SCHEDULER_KEYS:
            ok, domain = value == like and _is_number(value), f"{like} (from the run's settings)"
        elif key == "last_epoch":
            ok, domain = _is_int(value) and 0 <= value <= steps, f"integers in [0, {steps}]"
        elif isinstance(like, list):
            ok = isinstance(value, list) and len(value) == len(like) and all(
                _is_number(v) and math.isfinite(v) and 0 <= v < 10 for v in value)
            domain = f"a list of {len(like)} number(s) in [0, 10)"
        elif isinstance(like, bool):
            ok, domain = isinstance(value, bool), "true or false"
        elif _is_int(like):
            ok, domain = _is_int(value) and 0 <= value <= MAX_STEPS + 1, f"integers in [0, {MAX_STEPS + 1}]"
        elif _is_number(like):
            ok, domain = _is_number(value) and math.isfinite(value) and value >= 0, "a finite number >= 0"
        else:
            ok, domain = value is None or type(value) is type(like), f"a {type(like).__name__}"
        if not ok:
            c.fail(f"scheduler.{key}", value, domain)


def _check_rng(c: _Checker, tensors: dict[str, torch.Tensor], generators: dict[str, torch.Generator]) -> None:
    expected = {"torch": torch.get_rng_state()} | {name: g.get_state() for name, g in generators.items()}
    if "rng.torch" not in tensors:
        c.fail("tensor rng.torch", None, "present (the CPU random state)")
    for key, value in tensors.items():
        if not key.startswith("rng."):
            if not key.startswith(("model.", "optimizer.")):
                c.fail(f"tensor {key}", None, "absent (names start with model., optimizer. or rng.)")
            continue
        reference = expected.get(key[4:])
        if reference is not None and (value.dtype != reference.dtype or value.shape != reference.shape):
            c.fail(f"tensor {key}", list(value.shape), f"a {reference.dtype} tensor of shape {list(reference.shape)}")


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, generators: dict[str, torch.Generator],
                        stem: str = "checkpoint_last") -> dict[str, Any]:
    """Restore everything saved by `save_training_state`; returns the JSON metadata."""
    tensors, meta = read_training_state(folder, stem)
    weights = Path(folder) / f"{stem}.safetensors"
    if "package_version" in meta:
        check_compatible(meta["package_version"], f"{weights}: package_version")
    c = _Checker(str(weights))
    steps = getattr(scheduler, "T_max", MAX_STEPS)
    check_training_meta(meta, str(weights))
    _check_optimizer(c, meta, tensors, optimizer)
    _check_scheduler(c, meta, scheduler, MAX_STEPS if not isinstance(steps, int) else steps)
    _check_rng(c, tensors, generators)
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
            state.setdefault(int(index), {})[name] = torch.tensor(float(value))
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    for name, generator in generators.items():
        if f"rng.{name}" in tensors:  # absent in checkpoints written on another device type
            generator.set_state(tensors[f"rng.{name}"])
    return meta
