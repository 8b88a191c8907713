"""Data parallelism across lm-eval's processes, for the attribution loop: broadcast from rank 0, gather to rank 0,
wait for every rank. Written against ``torch.distributed`` (the process group lm-eval's accelerator set up) rather
than HFLM's helpers, which lm-eval 0.4.11 does not have."""

from __future__ import annotations

import torch


def broadcast(obj, world: int):
    if world <= 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj, rank: int, world: int) -> list | None:
    if world <= 1:
        return [obj]
    out = [None] * world if rank == 0 else None
    torch.distributed.gather_object(obj=obj, object_gather_list=out, dst=0)
    return out


def barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()
