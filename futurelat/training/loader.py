"""The batches of a training stage: a DataLoader that can start at any micro-step, and their move to the device."""

from __future__ import annotations

import functools
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from futurelat.training.distributed import DistInfo
from futurelat.training.preemption import ignore_signals
from futurelat.training.sampler import StepBatchSampler


def build_loader(dataset: Dataset, *, batch_size: int, seed: int, start_micro: int, stop_micro: int,
                 num_workers: int, dist: DistInfo, device: torch.device,
                 stop_signals: Sequence[signal.Signals]) -> DataLoader:
    """This rank's batches of micro-steps ``start_micro .. stop_micro - 1`` (:class:`StepBatchSampler`).

    The loader's own generator is seeded from ``(seed, start_micro, rank)``: creating its iterator
    draws nothing from the global torch RNG, so a resumed run's RNG stream equals an uninterrupted
    one. Workers ignore ``stop_signals`` (SLURM signals every process of a job step), so the step in
    flight can still fetch its micro-batches and be saved.
    """
    sampler = StepBatchSampler(len(dataset), batch_size, seed=seed, start=start_micro, stop=stop_micro,
                               rank=dist.rank, world_size=dist.world_size)
    loader_seed = int(np.random.SeedSequence([seed, start_micro, dist.rank])
                      .generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(loader_seed),
                      worker_init_fn=functools.partial(ignore_signals, stop_signals))


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (also inside nested dicts) moved to ``device``; other values as they are."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
