"""Data parallelism over processes, GPUs and nodes, as launched by ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (and ``MASTER_ADDR`` /
``MASTER_PORT``); without them a run is one process of one. The process group is only used for barriers: the
run directory on a shared file system is where ranks meet, so no tensors travel between processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from evolens.errors import SettingsError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands among the ranks of a launch.

    Attributes:
        rank: Global rank (0 .. world_size - 1).
        world_size: Processes in the launch.
        local_rank: Rank on this node (selects the GPU).
        local_world_size: Processes on this node.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"environment variable {name}={value!r} is not an integer") from None


def dist_info() -> DistInfo:
    """The launch this process belongs to, from ``torchrun``'s environment variables."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise SettingsError(
            f"inconsistent launch: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}, "
            f"LOCAL_WORLD_SIZE={local_world}"
        )
    return DistInfo(rank, world, local_rank, local_world)


@contextlib.contextmanager
def process_group(info: DistInfo, *, cuda: bool, timeout_s: float) -> Iterator[None]:
    """Join the launch's process group (``nccl`` when ranks use GPUs, ``gloo`` otherwise) for the duration.

    Nothing happens for a single process, or when the caller already initialized a group (it is then left as is).
    """
    if not info.is_distributed:
        yield
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    logger.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def rank_device(info: DistInfo, device: str | None) -> str | None:
    """The device of this rank: ``"auto"`` becomes ``cuda:<local_rank>`` in a multi-process launch with GPUs."""
    if device not in (None, "auto") or not info.is_distributed:
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{info.local_rank % torch.cuda.device_count()}"
    return "cpu"
