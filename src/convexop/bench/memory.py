"""Peak live bytes of the tensors a computation creates, counted operator by operator: the peak
resident set cannot measure it (the allocator reuses memory freed by earlier calls). Used by the
benchmarks' time-and-memory tables and to check `models.base.model_footprint` against."""

from __future__ import annotations

import gc
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["PeakTensorBytes", "peak_memory"]


class PeakTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the block and alive at once: every operator's
    outputs are counted when they appear (by storage, so views count once) and uncounted when the
    storage is freed (a weakref finaliser). Inputs and parameters made before the block are not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
        return out


def peak_memory(function) -> int:
    """Peak live bytes of the tensors function() creates (`PeakTensorBytes`), its result included."""
    gc.collect()
    with PeakTensorBytes() as tracker:
        result = function()
    del result
    return tracker.peak
