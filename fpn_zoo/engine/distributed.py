"""Several processes, one job: the few ``torch.distributed`` helpers that training and evaluation need.

Launch with ``torchrun`` (``python -m torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in every process. [`init_distributed`][fpn_zoo.engine.distributed.init_distributed]
reads them and joins the process group (NCCL on CUDA, gloo on CPU); without them it does nothing and every helper here
degrades to its single-process meaning (rank 0 of 1, gathering returns ``[obj]``, barriers return at once), so the same
code runs both ways.

Examples:
    ```console
    $ torchrun --nproc_per_node 2 -m fpn_zoo.cli eval --model fpn_r50_coco --pretrained --ann A --images DIR
    ```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_object",
    "barrier",
    "cleanup",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
    "launched_by_torchrun",
]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job.

    Attributes:
        rank: Global rank, 0 for the process that prints and writes files.
        world_size: Number of processes (1 when not launched by torchrun).
        local_rank: Rank on this machine; picks the GPU.
        device: The device this process computes on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether the torchrun environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) are set.

    Examples:
        >>> import os
        >>> launched_by_torchrun() == all(v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        True
    """
    return all(name in os.environ for name in _TORCHRUN_VARS)


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Environment variable {name}={value!r} is not an integer; launch with torchrun.") from None


def init_distributed(device: torch.device | str | None = None) -> DistInfo:
    """Join the torchrun process group, or describe the single process when not launched by torchrun.

    Under torchrun each process computes on ``cuda:LOCAL_RANK`` with the NCCL backend when CUDA is available (or
    ``device="cuda"`` is asked for), else on the CPU with gloo. Calling it again reuses the group.

    Args:
        device: ``None`` picks CUDA when available, else CPU. Under torchrun give ``"cuda"`` or ``"cpu"`` without
            an index: the local rank chooses the GPU.

    Returns:
        Rank, world size, local rank and device of this process.

    Raises:
        ValueError: An invalid device, a CUDA index under torchrun, or more local processes than GPUs.

    Examples:
        >>> info = init_distributed("cpu")  # not under torchrun: nothing to join
        >>> (info.rank, info.world_size, info.device)
        (0, 1, device(type='cpu'))
    """
    from fpn_zoo.factory import resolve_device

    if not launched_by_torchrun():
        return DistInfo(rank=0, world_size=1, local_rank=0, device=resolve_device(device))
    rank, world_size, local_rank = (_env_int(name) for name in _TORCHRUN_VARS)
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        if device is not None and wanted.index is not None:
            raise ValueError(
                f"Device {device!r} under torchrun: each process uses cuda:LOCAL_RANK; pass 'cuda' without an index "
                "and choose GPUs with CUDA_VISIBLE_DEVICES."
            )
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"Local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible; start at most that "
                "many processes per node (--nproc_per_node)."
            )
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)  # NCCL collectives, all_gather_object included, use the current device
    elif wanted.type != "cpu":
        raise ValueError(f"Device {device!r} under torchrun: use 'cuda' (NCCL) or 'cpu' (gloo).")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=wanted)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank of this process; 0 without a process group.

    Examples:
        >>> get_rank()
        0
    """
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    """Number of processes in the group; 1 without a process group.

    Examples:
        >>> get_world_size()
        1
    """
    return dist.get_world_size() if _active() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that prints, shows progress and writes files.

    Examples:
        >>> is_main_process()
        True
    """
    return get_rank() == 0


def barrier() -> None:
    """Wait until every process arrives here; returns at once without a process group.

    Examples:
        >>> barrier()
    """
    if _active():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process.

    Args:
        obj: Any picklable object.

    Returns:
        ``[obj_rank0, obj_rank1, ...]``; ``[obj]`` without a process group.

    Examples:
        >>> all_gather_object({"images": 3})
        [{'images': 3}]
    """
    if not _active() or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def cleanup() -> None:
    """Leave the process group, if one was joined; safe to call more than once.

    Examples:
        >>> cleanup()
    """
    if _active():
        dist.destroy_process_group()
