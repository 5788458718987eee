"""Multi-process data-parallel training with torch.distributed (as launched by torchrun).

`torchrun --nproc_per_node N -m convexop train ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK in their environment; each joins one process group (gloo on CPU, nccl on CUDA, one GPU
per local rank), holds a full copy of the data set and draws the same global batch from the same
per-epoch seed, then trains on its contiguous slice of that batch inside DistributedDataParallel
(gradients averaged across processes). The loss on each slice is scaled so that the averaged
gradient is the gradient of the global batch mean: training with N processes equals training with
one process on the same global batch, up to floating-point summation order. Only rank 0 writes.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank among world processes (world 1: no process group)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """True on the process that writes files and reports progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _env_int(name: str, default: int, low: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise InputError(f"environment {name}", text, f"integers >= {low}")
    return value


def world_size() -> int:
    """Processes in this job according to the environment (1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1, 1)


def setup(device: str) -> tuple[Context, str]:
    """Join the process group torchrun described (if any); returns the context and the device this
    process trains on ("cuda" becomes cuda:LOCAL_RANK)."""
    world = world_size()
    if world == 1:
        return Context(), device
    rank, local_rank = _env_int("RANK", 0, 0), _env_int("LOCAL_RANK", 0, 0)
    if rank >= world:
        raise InputError("environment RANK", rank, f"integers in [0, WORLD_SIZE = {world})")
    if device.startswith("cuda"):
        if device != "cuda":
            raise InputError("device", device, "cuda (with torchrun each process takes cuda:LOCAL_RANK)")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise InputError("environment WORLD_SIZE/RANK", f"{world}/{rank}", "",
                         f"the process group has {dist.get_world_size()} processes and rank {dist.get_rank()}")
    return Context(rank, world, local_rank, owns), device


def teardown(context: Context) -> None:
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()


def all_reduce_sum(context: Context, tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over all processes (the tensor itself with one process)."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class _Values(torch.nn.Module):
    """Routes DistributedDataParallel's forward to the operator model's `values(theta)`."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return self.model.values(theta)


def data_parallel(model: torch.nn.Module, context: Context, device: str):
    """A callable theta -> values: model.values itself, or a DDP-wrapped one in a process group."""
    if not context.enabled:
        return model.values
    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    ddp = torch.nn.parallel.DistributedDataParallel
    # the family's basis buffers are identical everywhere: no per-step buffer broadcast
    quiet = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
             else {"broadcast_buffers": False})
    return ddp(_Values(model), device_ids=device_ids, **quiet)
