"""Data-parallel training under ``torchrun``: the process group and the few collectives training needs.

``torchrun --nproc_per_node=N -m pipeline.training.trainer ...`` starts N processes and tells each its
RANK, LOCAL_RANK and WORLD_SIZE through the environment; a plain ``python -m pipeline.train``
is a world of one, and every helper here is then a no-op.  The backend is NCCL on CUDA
and gloo on the CPU.  Collectives time out after ``train.dist_timeout_minutes``, so a rank
whose peer died stops with an error instead of hanging; under torchrun the agent also tears
down the remaining ranks as soon as one fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, logs and writes checkpoints; the others wait for it."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun describes in the environment (a world of one without it).

    A SLURM job with several tasks started by hydra-submitit-launcher has no torchrun;
    submitit then exports the same variables (RANK, WORLD_SIZE, MASTER_ADDR...) from SLURM's.
    """
    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        _export_from_submitit()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _export_from_submitit() -> None:
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:  # a SLURM job not started through submitit: srun + torchrun set the variables
        return
    try:
        TorchDistributedEnvironment().export()
    except (RuntimeError, KeyError):  # not inside a submitit job
        return


def init_world(device: torch.device, timeout_minutes: float) -> tuple[World, torch.device]:
    """Join the process group when started by torchrun; returns the world and this rank's device."""
    world = world_from_env()
    if not world.distributed:
        return world, device
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return world, device


def close_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sum over ranks (one all-reduce)."""
    return _all_reduce(values, world, device, dist.ReduceOp.SUM)


def all_max(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise maximum over ranks (one all-reduce)."""
    return _all_reduce(values, world, device, dist.ReduceOp.MAX)


def _all_reduce(values: list[float], world: World, device: torch.device, op) -> list[float]:
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


def from_main(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_main(obj: Any, world: World) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (None on the others)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shard_of(group: list, world: World) -> list:
    """This rank's batches of one update's global ``group`` (rank r takes r, r + N, ...)."""
    return group[world.rank :: world.size]


def usable_batches(n_batches: int, world: World) -> int:
    """Batches of an epoch that all ranks can share equally (the last n mod N are dropped)."""
    return n_batches - n_batches % world.size
