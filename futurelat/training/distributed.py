"""Process-group setup for single-process and ``torchrun`` (DDP) training.

``torchrun --nproc_per_node K train.py`` sets the environment variables ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each of the K
processes; :func:`init_distributed` reads them and joins the process group (``nccl`` on
CUDA, ``gloo`` on CPU). Without them it describes a single process and initialises nothing.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from futurelat.training.slurm import export_slurm_environment

_DEVICES = ("auto", "cpu", "cuda")
_cached: DistInfo | None = None


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        local_rank: rank on this machine (selects the CUDA device).
        world_size: number of processes (1 without ``torchrun``).
        device: the device this process trains on (``cuda:{local_rank}`` or ``cpu``).
        is_main: ``rank == 0``; only this process logs, prints and saves checkpoints.
    """

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process (gradients must be all-reduced)."""
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:{local_rank}`` when CUDA is available, else ``cpu``.

    With fewer visible GPUs than local ranks (one GPU per task), rank ``r`` takes
    ``cuda:{r % device_count}``: ``cuda:0`` when each task sees only its own GPU.

    Raises:
        ValueError: unknown ``device`` string, or ``"cuda"`` without an available GPU.
    """
    if device not in _DEVICES:
        raise ValueError(f"trainer.device must be one of {_DEVICES}; got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("trainer.device is 'cuda' but torch.cuda.is_available() is False")
        # one GPU per task (SLURM --gpus-per-task, CUDA_VISIBLE_DEVICES): each rank sees only its own
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _env_int(key: str, default: int) -> int:
    value = os.environ.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {key}={value!r} is not an integer") from err


def init_distributed(device: str = "auto", timeout_s: float | None = None) -> DistInfo:
    """Join the ``torchrun`` process group if there is one; describe this process.

    Idempotent: later calls return the first call's :class:`DistInfo` (the ``device``
    argument of later calls is ignored). When a process group was already initialised
    by someone else, it is used as is.

    Args:
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"`` (see :func:`resolve_device`).
        timeout_s: collective-operation timeout in seconds (``None``: torch's default).

    Returns:
        :class:`DistInfo`; ``world_size == 1`` and no process group without ``torchrun``.

    Raises:
        ValueError: bad ``device``, or inconsistent ``RANK``/``WORLD_SIZE`` variables, or SLURM
            step variables (:func:`futurelat.training.slurm.slurm_environment`).
    """
    global _cached
    if _cached is not None:
        return _cached
    if torch_dist.is_available() and torch_dist.is_initialized():
        rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        dev = resolve_device(device, local_rank)
    else:
        export_slurm_environment()  # srun/submitit tasks without torchrun: SLURM's ranks as torchrun's variables
        world_size = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local_rank = _env_int("LOCAL_RANK", rank)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
        dev = resolve_device(device, local_rank)
        if world_size > 1:
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            backend = "nccl" if dev.type == "cuda" else "gloo"
            kwargs = {}
            if timeout_s is not None:
                kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
            torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                          **kwargs)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    _cached = DistInfo(rank=rank, local_rank=local_rank, world_size=world_size,
                       device=dev, is_main=rank == 0)
    return _cached


def cleanup_distributed() -> None:
    """Destroy the process group (if any) and forget the cached :class:`DistInfo`.

    A gloo group's worker threads may still hold the last reference to a tensor of a finished collective
    (e.g. a barrier keeps the work before it); freeing it needs the GIL, and the group's destructor holds
    the GIL while it joins those threads: an intermittent hang at exit (pytorch/pytorch#56297, #75097).
    The GIL is released for 50 ms first, so that they can finish.
    """
    global _cached
    if torch_dist.is_available() and torch_dist.is_initialized():
        if torch_dist.get_backend() == "gloo":
            time.sleep(0.05)
        torch_dist.destroy_process_group()
    _cached = None


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.distributed:
        if info.device.type == "cuda":
            torch_dist.barrier(device_ids=[info.device.index])
        else:
            torch_dist.barrier()


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (in place, also returned); identity for one process."""
    if info.distributed:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        tensor /= info.world_size
    return tensor


def all_gather_objects(obj, info: DistInfo) -> list:
    """``[obj_rank0, obj_rank1, ...]`` (pickled over the process group; every rank must
    call it); ``[obj]`` for one process."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    torch_dist.all_gather_object(out, obj)
    return out
