"""A training run on disk: RUN_DIR/config.json, train.h5, test.h5, model.*, history.csv, checkpoints.

The data set is drawn once per run (n_instances with data_seed; the first 1 - test_fraction by
index train, the rest test, as the authors split). With test_law other than "train" the test set
is drawn separately from that law (the paper's out-of-distribution tests).

Under torchrun (training/distributed.py) every process validates the same configuration, rank 0
alone writes config.json, the data sets, checkpoints and history, and the others read the data sets
once rank 0 has written them.

One writer per run folder: rank 0 holds RUN_DIR/train.lock (created with O_EXCL, holding its pid)
while it trains; a second `train` or `--resume` is refused naming that pid, a lock whose process is
gone is taken over, and the lock goes when training ends, by an error too. A run killed before its
first checkpoint (config.json, no checkpoint_last.*) restarts from step 0 under `--resume`, or is
replaced by a fresh `train` into the same folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data as datasets
from ..errors import InputError
from ..families import Family, get_family
from ..families.loading import locate
from ..files import process_alive, remove_stale_temporaries
from ..models.base import OperatorModel, atomic_write_bytes, build_model, check_model_size
from . import distributed
from .checkpoint import check_training_meta, has_training_state, read_training_state
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
    config = check_loaded(config, str(path))
    # a family file is looked for beside the run folder first (nothing runs before its sha256 matched)
    locate(config.family, config.family_config.get("file_sha256"), Path(run_dir), data.get("family_file"))
    return config


def prepare_run(config: RunConfig, family: Family | None = None) -> tuple[Family, OperatorModel]:
    """The one place that prepares (family, model) for a run: builds the family once (unless given: a
    family object made by user code), checks the model's memory estimate on the meta device (nothing
    allocated), then builds the model once; every bad setting is an InputError naming it and nothing
    is written. Seed torch before calling it for a repeatable initialisation."""
    check_device(config.training.device)
    try:
        family = family if family is not None else get_family(config.family, **config.family_config)
    except TypeError as error:  # unknown keyword in a hand-edited config.json
        raise InputError("family_config", config.family_config, "",
                         f"does not build {config.family} ({error})") from None
    try:  # its memory estimated on the meta device before anything is allocated
        check_model_size(config.model, family, config.model_kwargs, config.training.batch_size, training=True)
        model = build_model(config.model, family, **config.model_kwargs)
    except TypeError as error:
        raise InputError("model_kwargs", config.model_kwargs, "", f"do not build {config.model} ({error})") from None
    t = config.training
    if t.test_law != "train" and t.test_law not in family.laws:
        raise InputError("test_law", t.test_law, "one of " + ", ".join(family.laws))
    world = distributed.world_size()
    if t.loss == "objective" and not family.exact:
        raise InputError("loss", t.loss, "", f"label-free training minimises the program's objective; {family.name} "
                         "is supervised (its target is not argmin f + g): use loss=mse or relative")
    if t.loss == "objective" and world > 1:
        raise InputError("loss", t.loss, "", "label-free training runs in one process (no torchrun)")
    if t.loss == "objective" and not model.has_coefficients:
        raise InputError("loss", t.loss, "", f"label-free training needs a model that answers in the basis "
                         f"(geo), not {config.model}")
    if t.batch_size < world:
        raise InputError("batch_size", t.batch_size, f"integers >= the number of processes ({world})")
    return family, model


def prepare_data(family: Family, config: RunConfig, run_dir: Path,
                 progress=None) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Generate (or reuse) RUN_DIR/train.h5 and test.h5. Label-free runs (loss=objective) draw fresh
    instances at every step and solve no training instance: only test.h5 (the test fraction of
    n_instances, with references) is made, and it also serves as the scored "train" split."""
    t = config.training
    if t.loss == "objective":  # the test set a supervised run of the same settings would score on
        path = run_dir / "test.h5"
        if path.is_file():
            test = datasets.read_dataset(path, family)
        else:
            n_test = max(1, round(t.n_instances * t.test_fraction))
            if t.test_law == "train":
                test = datasets.generate(family, t.n_instances, t.data_seed, "train", progress,
                                         rows=(t.n_instances - n_test, t.n_instances))
            else:
                test = datasets.generate(family, n_test, t.data_seed + 1, t.test_law, progress)
            datasets.write_dataset(path, test)
        return test, test
    paths = run_dir / "train.h5", run_dir / "test.h5"
    if all(p.is_file() for p in paths):
        return tuple(datasets.read_dataset(p, family) for p in paths)  # type: ignore[return-value]
    n_test = max(1, round(t.n_instances * t.test_fraction))
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


def with_label_noise(split: Split, sigma: float, seed: int) -> Split:
    """The split with Gaussian noise of standard deviation sigma x (the targets' RMS) added to its
    targets (the GEO paper's open check: robustness to noisy training data); seeded, so a resumed run
    sees the same noise; the data set on disk stays clean."""
    generator = torch.Generator().manual_seed(int(seed) + 7919)
    scale = sigma * float(split.targets.double().pow(2).mean().sqrt())
    noise = torch.randn(split.targets.shape, generator=generator, dtype=torch.float32).to(split.targets.device)
    return Split(split.theta, split.targets + scale * noise)


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", device, "cpu (no CUDA device is available here)")
    if device.startswith("cuda:"):
        index = device[5:]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise InputError("device", device, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")


LOCK_NAME = "train.lock"
RUN_FILES = {"config.json", "train.h5", "test.h5", "model.safetensors", "model.json", "history.csv",
             "tensorboard", LOCK_NAME}
DATA_KEYS = ("n_instances", "test_fraction", "data_seed", "test_law")  # what the data sets depend on


def _started(pid: int) -> str | None:
    """The start time of process `pid` (Linux /proc), to tell it from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lock_holder(run_dir: Path) -> int | None:
    """The pid of the live process holding the run folder's lock (0: a lock being written, pid not
    yet in it), or None when it is free or stale (its process gone, or its pid now another's)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        words = path.read_text(errors="replace").split()
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if words and words[0].isdigit() and 0 < int(words[0]) < 2**31:
        pid = int(words[0])
        started = _started(pid) if len(words) > 1 else None
        return pid if process_alive(pid) and (started is None or started == words[1]) else None
    return 0 if age < 10 else None  # unreadable and old: stale


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN_DIR/train.lock (O_EXCL, with this process's pid) for the block; a live holder is
    refused naming its pid, a stale lock (its process gone) is taken over."""
    path = Path(run_dir) / LOCK_NAME
    for _ in range(5):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(run_dir)
            if holder is not None:
                who = f"process {holder}" if holder else "another process (its pid not yet written)"
                raise InputError("run directory", str(run_dir), "", f"in use: {LOCK_NAME} is held by {who}, "
                                 "another train or --resume writing this run; wait for it to end "
                                 f"(or delete {path} if pid {holder} is not convexop)") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(descriptor, "w") as stream:
            stream.write(f"{os.getpid()} {_started(os.getpid()) or ''}".strip() + "\n")
        break
    else:
        raise InputError("run directory", str(run_dir), "", f"could not take {LOCK_NAME} (contended); try again")
    try:
        yield
    finally:
        try:
            if path.read_text().split()[:1] == [str(os.getpid())]:
                path.unlink()
        except OSError:
            pass


def unfinished_run(run_dir: Path) -> bool:
    """A run killed before its first checkpoint: config.json, no checkpoint, only a run's own files."""
    run_dir = Path(run_dir)
    try:
        names = [p.name for p in run_dir.iterdir()]
    except OSError:
        return False
    return ("config.json" in names and not has_training_state(run_dir)
            and "checkpoint_last.json" not in names
            and all(n in RUN_FILES or (n.startswith(".") and n.endswith(".tmp")) for n in names))


def clear_unfinished(run_dir: Path, config: RunConfig) -> None:
    """Remove what a run killed before its first checkpoint left, to train it again from step 0; its
    data sets are kept when `config` draws the same ones."""
    remove_stale_temporaries(run_dir, unowned=True)
    try:
        old = json.loads((run_dir / "config.json").read_text())
        same = (old["family"], old["family_config"]) == (config.family, config.family_config) and all(
            old["training"][k] == getattr(config.training, k) for k in DATA_KEYS)
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    names = ["model.safetensors", "model.json", "history.csv"] + ([] if same else ["train.h5", "test.h5"])
    for name in names:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


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
    torch.manual_seed(config.training.seed)
    np.random.seed(config.training.seed)
    family, model = prepare_run(config, family)  # every setting checked before anything is written
    context, device = distributed.setup(config.training.device)
    lock = ExitStack()
    try:
        if context.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.enter_context(run_lock(run_dir))  # one writer: refused here, before anything is written
            if resume:
                remove_stale_temporaries(run_dir, unowned=True)
            if not has_training_state(run_dir) if resume else unfinished_run(run_dir):
                clear_unfinished(run_dir, config)  # killed before its first checkpoint: from step 0
            if not resume:
                record = config.to_json()
                source = getattr(family, "file_path", None)
                if source is not None:  # a family file: found again relative to the run folder
                    record["family_file"] = {"relative": os.path.relpath(source, run_dir.resolve()),
                                             "absolute": str(source)}
                atomic_write_bytes(run_dir / "config.json", json.dumps(record, indent=2).encode())
            train, test = prepare_data(family, config, run_dir, progress)
        distributed.barrier(context)
        if not context.main:
            train, test = prepare_data(family, config, run_dir)
        resume = resume and has_training_state(run_dir)
        if resume:  # every field of the checkpoint checked against this run before any is used
            t = config.training
            _, meta = read_training_state(run_dir)
            check_training_meta(meta, str(run_dir / "checkpoint_last.safetensors"), steps=t.steps,
                                n=len(train.params), batch_size=t.batch_size, max_rollbacks=t.max_rollbacks)
        model = model.to(device)
        train_split = to_split(train, device)
        if config.training.label_noise > 0 and config.training.loss != "objective":
            train_split = with_label_noise(train_split, config.training.label_noise, config.training.data_seed)
        trainer = Trainer(model, train_split, to_split(test, device), config.training,
                          run_dir, callback if context.main else None, context)
        history = trainer.fit(resume=resume)
        distributed.barrier(context)
    finally:
        lock.close()
        distributed.teardown(context)
    return model, history
