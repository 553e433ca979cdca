"""Multi-process data parallelism under torchrun (one process per device, gloo or NCCL).

Gradients are averaged across processes with all-reduce after every backward pass, which is what
DistributedDataParallel does; it is done explicitly because the adversarial rollout drives the
generator through ``step`` (token by token), a path DDP's forward hooks do not see.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_hint: str = "") -> DistInfo:
    """Join the process group torchrun set up (RANK/WORLD_SIZE/LOCAL_RANK); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not device_hint.startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local)


def sync_grads(model: torch.nn.Module, info: DistInfo) -> None:
    """Average every parameter gradient over the processes (in one flat buffer)."""
    if not info.enabled:
        return
    # Parameters without a gradient stay without one (as in one process, where the optimizer
    # skips them); which ones have gradients is the same on every rank: the code path is.
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= info.world_size
    off = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[off: off + n].view_as(p.grad))
        off += n


def broadcast_params(model: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every process."""
    if not info.enabled:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def all_true(flag: bool, info: DistInfo, device) -> bool:
    """True when ``flag`` holds on every process."""
    if not info.enabled:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return float(t) == 0.0


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
