"""A training run on disk: RUN_DIR/config.json, train.h5, test.h5, model.*, history.csv, checkpoints.

The data set is drawn once per run (n_instances with data_seed; the first 1 - test_fraction by
index train, the rest test, as the authors split). With test_law other than "train" the test set
is drawn separately from that law (the paper's out-of-distribution tests).
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
from ..models.base import atomic_write_bytes, build_model
from .config import RunConfig
from .trainer import Split, Trainer


def load_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError("run directory", str(run_dir), "", "not a run (config.json missing)")
    try:
        return RunConfig.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        raise InputError(str(path), None, "", "malformed run configuration") from None


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


def train_run(config: RunConfig, run_dir: str | Path, resume: bool = False,
              callback: Callable[[dict[str, Any]], None] | None = None, progress=None):
    """Train (or resume) a run; returns (model, history)."""
    run_dir = Path(run_dir)
    if resume:
        config = load_config(run_dir)
    check_device(config.training.device)
    family = get_family(config.family, **config.family_config)
    torch.manual_seed(config.training.seed)
    np.random.seed(config.training.seed)
    model = build_model(config.model, family, **config.model_kwargs)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_bytes(run_dir / "config.json", json.dumps(config.to_json(), indent=2).encode())
    train, test = prepare_data(family, config, run_dir, progress)
    device = config.training.device
    model = model.to(device)
    trainer = Trainer(model, to_split(train, device), to_split(test, device), config.training,
                      run_dir, callback)
    history = trainer.fit(resume=resume)
    return model, history
