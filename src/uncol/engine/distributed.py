"""Multi-process training on PyTorch's own engine (``torch.distributed``): gloo on CPU, nccl on GPU.

Only the student (and training-only projectors) are wrapped by DDP; frozen teachers live outside the
module tree, and the EMA teacher is updated identically on every rank from the synchronised student.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as td

    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=td.get_rank(), world_size=td.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def wrap_ddp(method: nn.Module, dist: DistInfo) -> nn.Module:
    if not dist.enabled:
        return method
    from torch.nn.parallel import DistributedDataParallel

    dev = next(method.parameters()).device
    return DistributedDataParallel(method, device_ids=[dev.index] if dev.type == "cuda" else None,
                                   find_unused_parameters=True)


def all_reduce_mean(values: dict[str, Any], dist: DistInfo) -> dict[str, Any]:
    """Average float scalars over ranks (identity in a single process)."""
    if not dist.enabled:
        return values
    import torch.distributed as td

    keys = sorted(k for k, v in values.items() if isinstance(v, (int, float)))
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    td.all_reduce(t)
    t /= dist.world_size
    return {**values, **{k: float(v) for k, v in zip(keys, t.tolist())}}


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        import torch.distributed as td

        td.barrier()


def cleanup(dist: DistInfo) -> None:
    if dist.enabled:
        import torch.distributed as td

        if td.is_initialized():
            td.destroy_process_group()
