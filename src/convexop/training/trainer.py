"""Supervised training of an operator model on a family's data set (Adam, mini-batches).

Loss: mean over the batch of the family's per-instance error (MSE over the evaluation points), or
with `loss="relative"` of that error divided by (the error of the zero prediction + loss_offset),
which weights instances with small targets up (the reported MSEs stay plain MSEs).
Every `eval_every` steps the full training and test sets are scored (per-instance MSE and relative
L2, then means); the weights with the lowest *training* loss are kept as `model.safetensors` (the
test set never selects anything); `checkpoint_last.*` holds everything needed for `--resume`.

Batches: each epoch is a permutation drawn from a generator seeded by (seed, epoch), so a run
resumed, or split over processes (training/distributed.py), sees the same global batches.
Numerical safety: a non-finite loss or gradient, or a supervised batch whose error exceeds BLOWUP
times that of predicting zero (times the first batch's ratio where that is above 1: a finite
blow-up, the weights have left every useful region, e.g. a learning rate too large for a larger
basis), rolls the run back to the last good state (the last checkpoint, or the start) and halves the
learning rate, at most `max_rollbacks` times; one more raises TrainingDiverged.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.base import OperatorModel, atomic_write_bytes, save_model
from .checkpoint import load_training_state, save_training_state
from .config import TrainingConfig
from .distributed import Context, all_reduce_sum, data_parallel

HISTORY_FIELDS = ["step", "train_loss", "train_mse", "test_mse", "test_relative_l2", "lr", "seconds"]


BLOWUP = 100.0  # a batch MSE this many times the zero prediction's counts as divergence


class TrainingDiverged(RuntimeError):
    """The loss stayed NaN or infinite after `max_rollbacks` roll-backs with halved learning rates."""


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the n training instances in `epoch` (the same in every process)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return torch.randperm(n, generator=generator)


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
                 run_dir: Path, callback: Callable[[dict[str, Any]], None] | None = None,
                 context: Context | None = None) -> None:
        self.model, self.train, self.test, self.config = model, train, test, config
        self.run_dir = Path(run_dir)
        self.callback = callback
        self.context = context or Context()
        device = str(train.theta.device)
        self.forward = data_parallel(model, self.context, device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.generators = ({"cuda": torch.cuda.default_generators[train.theta.device.index or 0]}
                           if train.theta.device.type == "cuda" else {})
        self.history: list[dict[str, float]] = []
        self.step = 0
        self.epoch = 0
        self.rollbacks = 0
        self.best_train = math.inf
        self.elapsed = 0.0
        self.order: torch.Tensor | None = None
        self.cursor, self.running, self.count = 0, 0.0, 0
        self.last_good: dict[str, Any] | None = None
        self.first_ratio: float | None = None  # the first batch's error over the zero prediction's
        with torch.no_grad():  # per training instance: the error of predicting zero (the blow-up scale)
            self.zero_error = model.family.error(torch.zeros_like(train.targets), train.targets)

    def fit(self, resume: bool = False) -> list[dict[str, float]]:
        if resume:
            meta = load_training_state(self.run_dir, self.model, self.optimizer, self.scheduler,
                                       self.generators)
            self.step, self.history = meta["step"], meta["history"]
            self.best_train, self.elapsed = meta["best_train"], meta["elapsed"]
            self.order, self.cursor = torch.tensor(meta["order"]), meta["cursor"]
            self.running, self.count = meta["running"], meta["count"]
            self.epoch, self.rollbacks = meta.get("epoch", 0), meta.get("rollbacks", 0)
        writer = self._tensorboard(purge_step=self.step + 1 if resume else None)
        n = len(self.train.theta)
        if self.order is None:
            self.order, self.cursor = epoch_permutation(n, self.config.seed, self.epoch), 0
        started = time.perf_counter() - self.elapsed
        self.model.train()
        self._remember_good_state()
        while self.step < self.config.steps:
            if self.cursor + self.config.batch_size > n and self.cursor > 0:
                self.epoch += 1
                self.order, self.cursor = epoch_permutation(n, self.config.seed, self.epoch), 0
            index = self.order[self.cursor:self.cursor + self.config.batch_size]
            self.cursor += self.config.batch_size
            loss, objective, problem = self._batch_loss(index)
            if problem:
                self._roll_back(problem)
                continue
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
            if not torch.isfinite(norm):
                self._roll_back(f"gradient norm became {norm.item()}")
                continue
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            self.running, self.count = self.running + loss, self.count + 1
            last = self.step == self.config.steps
            if self.step % self.config.eval_every == 0 or last:
                row = self._evaluate(self.running / self.count, time.perf_counter() - started)
                self.running, self.count = 0.0, 0
                if writer is not None:
                    for key in ("train_loss", "train_mse", "test_mse", "test_relative_l2", "lr"):
                        writer.add_scalar(key, row[key], self.step)
                if self.callback is not None and self.context.main:
                    self.callback(row)
            if self.step % self.config.checkpoint_every == 0 or last:
                self.elapsed = time.perf_counter() - started
                self._checkpoint()
                self._remember_good_state()
        if writer is not None:
            writer.close()
        return self.history

    def _batch_loss(self, index: torch.Tensor) -> tuple[float, torch.Tensor, str]:
        """(mean loss over the global batch, this process's objective to differentiate, the problem
        that calls for a roll-back: "" when none, else a non-finite loss or a blow-up).

        With P processes each takes a contiguous slice of the global batch; its summed error is
        scaled by P / batch, so the gradients DistributedDataParallel averages are those of the
        global batch mean.
        """
        context = self.context
        if self.config.loss == "objective":
            return self._objective_loss()
        local = index.tensor_split(context.world)[context.rank] if context.enabled else index
        targets = self.train.targets[local]
        errors = self.model.family.error(self.forward(self.train.theta[local]), targets)
        zero = self.zero_error[local]
        raw = errors.detach()
        if self.config.loss == "relative":
            scale = self.model.family.error(torch.zeros_like(targets), targets) + self.config.loss_offset
            errors = errors / scale.clamp_min(1e-30)
        auxiliary = self.model.auxiliary_loss
        if not context.enabled:
            loss = errors.mean()
            objective = loss + auxiliary if auxiliary is not None else loss
            return loss.item(), objective, self._problem(objective, raw.sum().item(), zero.sum().item(), loss.item())
        loss = errors.sum() * (context.world / len(index))
        objective = loss + auxiliary if auxiliary is not None else loss
        totals = torch.stack([errors.detach().sum(), objective.detach(), raw.sum(), zero.sum()]).double()
        totals = all_reduce_sum(context, totals)  # every process sees the same sums: one decision
        mean = totals[0].item() / len(index)
        return mean, objective, self._problem(totals[:2], totals[2].item(), totals[3].item(), mean)

    def _problem(self, checked: torch.Tensor, error: float, zero_error: float, loss: float) -> str:
        """"" unless `checked` is not finite ("loss became nan") or the summed batch error exceeds
        BLOWUP x max(1, the first batch's ratio) times the summed error of predicting zero."""
        if not bool(torch.isfinite(checked).all()):
            return f"loss became {loss}"
        if zero_error <= 0:
            return ""
        ratio = error / zero_error
        if self.first_ratio is None:
            self.first_ratio = ratio
        if ratio > BLOWUP * max(1.0, self.first_ratio):
            return (f"loss blew up to {ratio:.3g} x the error of predicting zero (limit "
                    f"{BLOWUP * max(1.0, self.first_ratio):.3g}x; loss {loss:.3g})")
        return ""

    def _objective_loss(self) -> tuple[float, torch.Tensor, bool]:
        """Label-free: the program's own objective f + g at the model's answers to a fresh draw of
        batch_size instances (seeded by (seed, step), so a resumed run draws the same ones). With the
        prox activation the answers lie in dom f (feasible); on QP duals the objective is minus the
        dual function, so every answer's value is a valid bound."""
        family = self.model.family
        rng = np.random.default_rng([int(self.config.seed), int(self.step), int(self.rollbacks)])
        theta = torch.as_tensor(family.sample(self.config.batch_size, rng), dtype=torch.float32,
                                device=self.train.theta.device)
        values = family.objective(self.model.coefficients(theta), theta)
        auxiliary = self.model.auxiliary_loss
        loss = values.mean()
        objective = loss + auxiliary if auxiliary is not None else loss
        return loss.item(), objective, "" if bool(torch.isfinite(objective)) else f"loss became {loss.item()}"

    def _remember_good_state(self) -> None:
        """In-memory copy of what the last checkpoint holds (every process keeps its own)."""
        self.last_good = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "rng": torch.get_rng_state(),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            "counters": (self.step, self.epoch, self.order.clone(), self.cursor, self.running, self.count,
                         self.rollbacks, list(self.history)),
        }

    def _roll_back(self, what: str) -> None:
        """Return to the last good state with the learning rate halved once more, or give up."""
        good = self.last_good
        assert good is not None
        step, lr = self.step + 1, self.optimizer.param_groups[0]["lr"]
        if self.rollbacks >= self.config.max_rollbacks:
            kept = (f"the last good checkpoint (step {good['counters'][0]}) is kept in {self.run_dir}"
                    if good["counters"][0] > 0 else "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"{what} at step {step} after {self.rollbacks} roll-back(s) with halved learning rates "
                f"(max_rollbacks = {self.config.max_rollbacks}, lr now {lr:.3g}); {kept}; "
                "lower lr, set grad_clip or change init")
        self.rollbacks += 1
        self.model.load_state_dict(good["model"])
        self.optimizer.load_state_dict(copy.deepcopy(good["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(good["scheduler"]))
        torch.set_rng_state(good["rng"])
        for name, generator in self.generators.items():
            generator.set_state(good["generators"][name])
        (self.step, self.epoch, order, self.cursor, self.running, self.count, since,
         history) = good["counters"]
        self.order, self.history = order.clone(), list(history)
        factor = 0.5 ** (self.rollbacks - since)
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        if self.scheduler is not None:
            self.scheduler.base_lrs = [base * factor for base in self.scheduler.base_lrs]
            self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                self.scheduler.eta_min *= factor
        if self.callback is not None and self.context.main:  # said, never silent
            self.callback({"event": "rollback", "step": step, "reason": what, "to_step": self.step,
                           "lr": self.optimizer.param_groups[0]["lr"], "rollbacks": self.rollbacks})

    def _evaluate(self, train_loss: float, seconds: float) -> dict[str, float]:
        self.model.eval()
        train = per_instance_metrics(self.model, self.train)
        test = per_instance_metrics(self.model, self.test)
        self.model.train()
        row = {"step": self.step, "train_loss": train_loss, "train_mse": train["mse"].mean().item(),
               "test_mse": test["mse"].mean().item(), "test_relative_l2": test["relative_l2"].mean().item(),
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds}
        self.history.append(row)
        if row["train_mse"] < self.best_train:  # NaN never compares smaller: diverged weights are not kept
            self.best_train = row["train_mse"]
            if self.context.main:
                save_model(self.model, self.run_dir)
        if self.context.main:
            self._write_history()
        return row

    def _write_history(self) -> None:
        stream = io.StringIO()
        writer = csv.DictWriter(stream, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_bytes(self.run_dir / "history.csv", stream.getvalue().encode())

    def _checkpoint(self) -> None:
        if not self.context.main:
            return
        extra = {"step": self.step, "history": self.history, "best_train": self.best_train,
                 "elapsed": self.elapsed, "order": self.order.tolist(), "cursor": self.cursor,
                 "running": self.running, "count": self.count, "epoch": self.epoch,
                 "rollbacks": self.rollbacks}
        save_training_state(self.run_dir, self.model, self.optimizer, self.scheduler,
                            self.generators, extra)

    def _tensorboard(self, purge_step: int | None = None):
        """Event files are append-only streams, not atomic files: on resume, events after the
        checkpoint's step are purged so a crash leaves no duplicates."""
        if not self.config.tensorboard or not self.context.main:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge_step)

