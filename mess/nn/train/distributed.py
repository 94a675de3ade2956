"""This process's place in a ``torchrun`` job, and the device it trains on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (world size 1 without one)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``).

    Without those variables (a plain run) nothing happens. The backend is NCCL on CUDA, gloo on
    CPU.

    Args:
        device: the requested device; ``cpu`` forces gloo.

    Returns:
        The :class:`Distributed` description.
    """
    if "WORLD_SIZE" not in os.environ:
        return Distributed()
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    initialized_here = False
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
        initialized_here = True
    return Distributed(world, rank, local, initialized_here)


def is_main_process() -> bool:
    """True outside torchrun and on rank 0 (the only process that writes files)."""
    return int(os.environ.get("RANK", "0")) == 0


def cleanup_distributed(ctx: Distributed) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(device: str, ctx: Distributed | None = None) -> torch.device:
    """``auto`` -> CUDA when present (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and ctx is not None and ctx.enabled:
        device = f"cuda:{ctx.local_rank}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available")
    return torch.device(device)
