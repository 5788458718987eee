"""Supervised training of an operator model on a family's data set (Adam, mini-batches).

Loss: mean over the batch of the family's per-instance error (MSE over the evaluation points).
Every `eval_every` steps the full training and test sets are scored (per-instance MSE and relative
L2, then means); the weights with the lowest *training* loss are kept as `model.safetensors` (the
test set never selects anything); `checkpoint_last.*` holds everything needed for `--resume`.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.base import OperatorModel, atomic_write_bytes, save_model
from .checkpoint import load_training_state, save_training_state
from .config import TrainingConfig

HISTORY_FIELDS = ["step", "train_loss", "train_mse", "test_mse", "test_relative_l2", "lr", "seconds"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Split:
    theta: torch.Tensor  # (n, P)
    targets: torch.Tensor  # (n, points)


def per_instance_metrics(model: OperatorModel, split: Split, batch: int = 4096) -> dict[str, torch.Tensor]:
    """Per-instance MSE and relative L2 (discrete norms over the points), no gradients."""
    mse, rel = [], []
    with torch.no_grad():
        for start in range(0, len(split.theta), batch):
            theta, target = split.theta[start:start + batch], split.targets[start:start + batch]
            predicted = model.values(theta)
            mse.append(model.family.error(predicted, target))
            rel.append((predicted - target).norm(dim=-1) / target.norm(dim=-1).clamp_min(1e-12))
    return {"mse": torch.cat(mse), "relative_l2": torch.cat(rel)}


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr * 1e-2)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.steps // 4), gamma=0.3)
    return None


class Trainer:
    def __init__(self, model: OperatorModel, train: Split, test: Split, config: TrainingConfig,
                 run_dir: Path, callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.model, self.train, self.test, self.config = model, train, test, config
        self.run_dir = Path(run_dir)
        self.callback = callback
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.sampler = torch.Generator().manual_seed(config.seed + 1)
        self.history: list[dict[str, float]] = []
        self.step = 0
        self.best_train = math.inf
        self.elapsed = 0.0
        self.order: torch.Tensor | None = None
        self.cursor, self.running, self.count = 0, 0.0, 0

    def fit(self, resume: bool = False) -> list[dict[str, float]]:
        if resume:
            meta = load_training_state(self.run_dir, self.model, self.optimizer, self.scheduler,
                                       {"sampler": self.sampler})
            self.step, self.history = meta["step"], meta["history"]
            self.best_train, self.elapsed = meta["best_train"], meta["elapsed"]
            self.order, self.cursor = torch.tensor(meta["order"]), meta["cursor"]
            self.running, self.count = meta["running"], meta["count"]
        writer = self._tensorboard()
        n = len(self.train.theta)
        if self.order is None:
            self.order, self.cursor = torch.randperm(n, generator=self.sampler), 0
        started = time.perf_counter() - self.elapsed
        self.model.train()
        while self.step < self.config.steps:
            if self.cursor + self.config.batch_size > n and self.cursor > 0:
                self.order, self.cursor = torch.randperm(n, generator=self.sampler), 0
            index = self.order[self.cursor:self.cursor + self.config.batch_size]
            self.cursor += self.config.batch_size
            theta, target = self.train.theta[index], self.train.targets[index]
            loss = self.model.family.error(self.model.values(theta), target).mean()
            auxiliary = getattr(self.model, "auxiliary_loss", None)
            objective = loss + auxiliary if auxiliary is not None else loss
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at step {self.step + 1}; "
                                       "lower lr or change init")
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            self.running, self.count = self.running + loss.item(), self.count + 1
            last = self.step == self.config.steps
            if self.step % self.config.eval_every == 0 or last:
                row = self._evaluate(self.running / self.count, time.perf_counter() - started)
                self.running, self.count = 0.0, 0
                if writer is not None:
                    for key in ("train_loss", "train_mse", "test_mse", "test_relative_l2", "lr"):
                        writer.add_scalar(key, row[key], self.step)
                if self.callback is not None:
                    self.callback(row)
            if self.step % self.config.checkpoint_every == 0 or last:
                self.elapsed = time.perf_counter() - started
                self._checkpoint()
        if writer is not None:
            writer.close()
        return self.history

    def _evaluate(self, train_loss: float, seconds: float) -> dict[str, float]:
        self.model.eval()
        train = per_instance_metrics(self.model, self.train)
        test = per_instance_metrics(self.model, self.test)
        self.model.train()
        row = {"step": self.step, "train_loss": train_loss, "train_mse": train["mse"].mean().item(),
               "test_mse": test["mse"].mean().item(), "test_relative_l2": test["relative_l2"].mean().item(),
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds}
        self.history.append(row)
        if row["train_mse"] < self.best_train:
            self.best_train = row["train_mse"]
            save_model(self.model, self.run_dir)
        self._write_history()
        return row

    def _write_history(self) -> None:
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_bytes(self.run_dir / "history.csv", stream.getvalue().encode())

    def _checkpoint(self) -> None:
        extra = {"step": self.step, "history": self.history, "best_train": self.best_train,
                 "elapsed": self.elapsed, "order": self.order.tolist(), "cursor": self.cursor,
                 "running": self.running, "count": self.count}
        save_training_state(self.run_dir, self.model, self.optimizer, self.scheduler,
                            {"sampler": self.sampler}, extra)

    def _tensorboard(self):
        if not self.config.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
