"""A training run on disk: RUN_DIR/config.json, train.h5, test.h5, model.*, history.csv, checkpoints.

The data set is drawn once per run (n_instances with data_seed; the first 1 - test_fraction by
index train, the rest test, as the authors split). With test_law other than "train" the test set
is drawn separately from that law (the paper's out-of-distribution tests).

Under torchrun (training/distributed.py) every process validates the same configuration, rank 0
alone writes config.json, the data sets, checkpoints and history, and the others read the data sets
once rank 0 has written them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from ..errors import InputError
from ..families import Family, get_family
from ..models.base import OperatorModel, atomic_write_bytes, build_model
from . import distributed
from .config import RunConfig, check_loaded
from .trainer import Split, Trainer


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    try:
        found = path.is_file()
    except (ValueError, OSError):  # NUL bytes, over-long names
        found = False
    if not found:
        raise InputError("run directory", str(run_dir), "", "not a run (config.json missing)")
    try:
        data = json.loads(path.read_text())
        config = RunConfig.from_json(data)
        if not all(isinstance(v, dict) for v in (config.family_config, config.model_kwargs)):
            raise TypeError
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
        raise InputError(str(path), None, "", "malformed run configuration") from None
    return check_loaded(config, str(path))


def build_checked(config: RunConfig, family: Family | None = None) -> tuple[Family, OperatorModel]:
    """Build the family (unless given: a family object made by user code) and the model of `config`,
    turning every bad setting into an InputError naming it; nothing is written. Used before any file
    of a run is created."""
    check_device(config.training.device)
    try:
        family = family if family is not None else get_family(config.family, **config.family_config)
    except TypeError as error:  # unknown keyword in a hand-edited config.json
        raise InputError("family_config", config.family_config, "", f"does not build {config.family} ({error})") from None
    try:
        model = build_model(config.model, family, **config.model_kwargs)
    except TypeError as error:
        raise InputError("model_kwargs", config.model_kwargs, "", f"do not build {config.model} ({error})") from None
    t = config.training
    if t.test_law != "train" and t.test_law not in family.laws:
        raise InputError("test_law", t.test_law, "one of " + ", ".join(family.laws))
    world = distributed.world_size()
    if t.batch_size < world:
        raise InputError("batch_size", t.batch_size, f"integers >= the number of processes ({world})")
    return family, model


def prepare_data(family: Family, config: RunConfig, run_dir: Path, progress=None) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Generate (or reuse) RUN_DIR/train.h5 and test.h5."""
    t = config.training
    paths = run_dir / "train.h5", run_dir / "test.h5"
    if all(p.is_file() for p in paths):
        return tuple(datasets.read_dataset(p, family) for p in paths)  # type: ignore[return-value]
    n_test = max(1, int(round(t.n_instances * t.test_fraction)))
    if t.test_law == "train":
        full = datasets.generate(family, t.n_instances, t.data_seed, "train", progress)
        cut = t.n_instances - n_test
        train = datasets.Dataset(full.params[:cut], full.targets[:cut], full.points, full.attrs)
        test = datasets.Dataset(full.params[cut:], full.targets[cut:], full.points, full.attrs)
    else:
        if t.test_law not in family.laws:
            raise InputError("test_law", t.test_law, "one of " + ", ".join(family.laws))
        train = datasets.generate(family, t.n_instances - n_test, t.data_seed, "train", progress)
        test = datasets.generate(family, n_test, t.data_seed + 1, t.test_law, progress)
    for path, split in zip(paths, (train, test)):
        datasets.write_dataset(path, split)
    return train, test


def to_split(data: datasets.Dataset, device: str) -> Split:
    return Split(torch.as_tensor(data.params, dtype=torch.float32, device=device),
                 torch.as_tensor(data.targets, dtype=torch.float32, device=device))


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", device, "cpu (no CUDA device is available here)")
    if device.startswith("cuda:"):
        index = device[5:]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise InputError("device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the `.NAME.*.tmp` files an atomic write leaves when a process is killed mid-write."""
    for path in Path(run_dir).glob(".*.tmp"):
        path.unlink(missing_ok=True)


def train_run(config: RunConfig, run_dir: str | Path, resume: bool = False,
              callback: Callable[[dict[str, Any]], None] | None = None, progress=None,
              family: Family | None = None):
    """Train (or resume) a run; returns (model, history). `family`: the family object itself, for
    families built in Python (from_torch, from_cvxpy) that no name rebuilds."""
    run_dir = Path(run_dir)
    if resume:
        config = load_config(run_dir)
    if family is not None and (family.name != config.family or family.family_config() != config.family_config):
        raise InputError("family", family.name, "", f"the run configuration names {config.family}")
    build_checked(config, family)  # every setting checked before anything is written
    context, device = distributed.setup(config.training.device)
    try:
        torch.manual_seed(config.training.seed)
        np.random.seed(config.training.seed)
        family = family if family is not None else get_family(config.family, **config.family_config)
        model = build_model(config.model, family, **config.model_kwargs)
        if context.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if resume:
                remove_stale_temporaries(run_dir)
            else:
                atomic_write_bytes(run_dir / "config.json", json.dumps(config.to_json(), indent=2).encode())
            train, test = prepare_data(family, config, run_dir, progress)
        distributed.barrier(context)
        if not context.main:
            train, test = prepare_data(family, config, run_dir)
        model = model.to(device)
        trainer = Trainer(model, to_split(train, device), to_split(test, device), config.training,
                          run_dir, callback if context.main else None, context)
        history = trainer.fit(resume=resume)
        distributed.barrier(context)
    finally:
        distributed.teardown(context)
    return model, history
