"""Stateless, resumable batch sampling: the batch of (micro-)step ``s`` on rank ``r`` is a
pure function of ``(seed, s, r)``.

The dataset is read as an endless stream of epochs; epoch ``e`` is the permutation
``numpy.random.default_rng([seed, e]).permutation(num_samples)``. Step ``s`` takes the
``batch_size * world_size`` stream positions ``[s * G, (s + 1) * G)`` (``G`` the global
batch) and rank ``r`` takes the contiguous chunk ``[s * G + r * batch_size, ... + batch_size)``.
So ranks see disjoint samples, every sample is seen once per epoch, the union over ranks of
a step's batches equals the batch of a single process with ``batch_size * world_size``, and
resuming at step ``s`` needs no sampler state in the checkpoint.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


@lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_samples: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def batch_indices(step: int, *, batch_size: int, num_samples: int, seed: int,
                  rank: int = 0, world_size: int = 1) -> list[int]:
    """Dataset indices of the batch for ``step`` (0-based micro-step) on ``rank``.

    Returns:
        ``batch_size`` ints in ``[0, num_samples)`` (a batch may straddle two epochs).

    Raises:
        ValueError: non-positive sizes, negative seed/step, or ``rank`` outside ``[0, world_size)``.
    """
    if num_samples <= 0:
        raise ValueError(f"cannot sample from an empty dataset (num_samples={num_samples})")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0; got {batch_size}")
    if seed < 0 or step < 0:
        raise ValueError(f"seed and step must be >= 0; got seed={seed}, step={step}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, world_size={world_size})")
    start = (step * world_size + rank) * batch_size
    out: list[int] = []
    pos = start
    while len(out) < batch_size:
        epoch, offset = divmod(pos, num_samples)
        take = min(batch_size - len(out), num_samples - offset)
        perm = _epoch_permutation(seed, epoch, num_samples)
        out.extend(int(i) for i in perm[offset:offset + take])
        pos += take
    return out


class StepBatchSampler(Sampler[list[int]]):
    """``batch_sampler`` for a ``DataLoader``: yields :func:`batch_indices` for the
    micro-steps ``start, start + 1, ..., stop - 1``.

    Works with ``num_workers > 0`` (the indices are computed in the main process).
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1):
        if stop < start:
            raise ValueError(f"stop ({stop}) < start ({start})")
        batch_indices(start, batch_size=batch_size, num_samples=num_samples, seed=seed,
                      rank=rank, world_size=world_size)  # validate arguments early
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield batch_indices(step, batch_size=self.batch_size, num_samples=self.num_samples,
                                seed=self.seed, rank=self.rank, world_size=self.world_size)

    def __len__(self) -> int:
        return self.stop - self.start
