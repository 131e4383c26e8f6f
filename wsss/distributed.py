"""torchrun helpers: one process per GPU (nccl) or per CPU worker (gloo), a no-op when run alone.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them everything here behaves as
a single process (rank 0 of 1) and never touches ``torch.distributed``. On several nodes the global rank
says nothing about the GPU: a process always takes ``cuda:<LOCAL_RANK>`` of its own node. With the c10d
rendezvous torchrun ignores ``--node-rank`` and numbers the nodes itself, so global rank 0 (checkpoints,
the merged manifest, the stage-one lock) may sit on any node, and on another one after a restart.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from wsss.utils.runtime import resolve_device


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group (nccl on CUDA, gloo on CPU) and pick this rank's device.

    Idempotent: a second call returns the same group. ``device`` is the config's ``device`` key;
    with several ranks on CUDA each rank takes ``cuda:<LOCAL_RANK>``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if world > 1 and local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
                               "use --nproc_per_node <= the GPU count")
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def job_id() -> str | None:
    """torchrun's ``--rdzv-id`` (``TORCHELASTIC_RUN_ID``), the same for every attempt of one job; None when
    not under torchrun or left at torchrun's default ``none`` (which every job shares, so names none)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "").strip()
    return run_id if run_id and run_id != "none" else None


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(info: DistInfo, values: np.ndarray | float) -> np.ndarray:
    """Sum a float64/int64 array (or scalar) over ranks; returned as numpy on every rank."""
    arr = np.asarray(values)
    if not info.enabled:
        return arr
    # float64 is exact for the counts and loss sums used here; gloo and nccl both reduce it
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)).to(
        info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    out = t.cpu().numpy()
    return out.astype(arr.dtype) if arr.dtype.kind in "iu" else out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (for small picklable things like a decision)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: Sequence[Any], info: DistInfo) -> list[Any]:
    """This rank's share: every ``world_size``-th item from ``rank``, so shards differ by at most one."""
    return list(items[info.rank::info.world_size])


def broadcast_buffers(info: DistInfo, module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running stats) on every rank, e.g. before a sharded validation."""
    if info.enabled:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)
