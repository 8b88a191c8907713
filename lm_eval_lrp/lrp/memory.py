"""How many sequences fit in one attribution batch: the graph's bytes, measured, against each device's free memory.

An attribution batch holds, until its backward, what autograd saved in the forward under the LRP rules. Its size
is measured, not modelled: :class:`GraphBytes` counts the bytes of every tensor the graph saves (each storage once,
the model's own parameters and buffers excluded) per device, while one sequence is explained. That gives bytes per
token per device for this model, dtype, attention implementation and device map. :func:`auto_batch_size` then
allows ``HEADROOM`` × that per sequence (gradients in flight during the backward, allocator slack) within
``FRACTION`` of each device's free memory:

* CUDA: ``torch.cuda.mem_get_info`` plus what PyTorch's caching allocator has reserved but not handed out;
* CPU: ``MemAvailable`` of ``/proc/meminfo`` (the kernel's estimate of memory available without swapping); where
  that file is missing, ``os.sysconf`` free pages; and at most ``CPU_MAX_BATCH`` sequences, the largest batch
  measured on a CPU (3.1× the throughput of batch 1 on SmolLM2: benchmarks/RESULTS.md, "Batched attribution").

The measured sequence is the longest of a run, so for shorter ones the estimate errs on the large side (attention
terms grow faster than linearly with eager attention). An estimate that is still too small is caught by the caller:
an out-of-memory error halves the batch (:func:`lm_eval_lrp.lrp.batched.explain_many`).
"""

from __future__ import annotations

import os

import torch
from torch import nn

HEADROOM = 2.0
FRACTION = 0.5
GPU_MAX_BATCH = 64
CPU_MAX_BATCH = 8


class GraphBytes:
    """Bytes saved by autograd for the backward while the ``with`` block runs, per device."""

    def __init__(self, model: nn.Module):
        self._skip = {_storage(t) for t in list(model.parameters()) + list(model.buffers())}
        self._seen: set = set()
        self.bytes: dict[torch.device, int] = {}
        self._hooks = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage(t)
        if key is not None and key not in self._skip and key not in self._seen:
            self._seen.add(key)
            self.bytes[t.device] = self.bytes.get(t.device, 0) + t.untyped_storage().nbytes()
        return t

    def __enter__(self) -> "GraphBytes":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._seen.clear()

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def per_token(self, tokens: int) -> dict[torch.device, float] | None:
        """Bytes per token per device, or None if nothing was measured."""
        if not self.total or tokens < 1:
            return None
        return {device: n / tokens for device, n in self.bytes.items()}


def _storage(t: torch.Tensor):
    try:
        return (t.device, t.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):  # tensors without a storage (meta, some subclasses)
        return None


def free_bytes(device: torch.device) -> int:
    """Memory available for new tensors on ``device`` (see the module's notes)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def auto_batch_size(model: nn.Module, per_token: dict | None, tokens: int, max_batch_size: int | None = None) -> int:
    """Sequences of ``tokens`` tokens whose graphs fit on every device, from ``per_token`` (:class:`GraphBytes`)."""
    if not per_token:
        return 1
    if max_batch_size is None:
        max_batch_size = GPU_MAX_BATCH if any(torch.device(d).type == "cuda" for d in per_token) else CPU_MAX_BATCH
    size = max_batch_size
    for device, per in per_token.items():
        need = HEADROOM * per * max(tokens, 1)
        size = min(size, int(FRACTION * free_bytes(device) // max(need, 1.0)))
    return max(1, size)


def is_oom(err: BaseException) -> bool:
    """An out-of-memory error of any device (CUDA's ``OutOfMemoryError``, the CPU allocator's RuntimeError)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(err, MemoryError))
