"""Tiny synthetic frame sequences for the evaluation tests (no dataset downloads)."""

from __future__ import annotations

import pytest
import torch


class SequenceDataset(torch.utils.data.Dataset):
    """Map-style dataset of ``{"frames": (T, C, H, W)}`` built from a ``(N, T, C, H, W)`` tensor."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "index": i}


def make_sequences(n: int = 6, t: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``(n, t, 1, size, size)`` in [0, 1]: a bright square moving on a dark noisy background."""
    g = torch.Generator().manual_seed(seed)
    frames = 0.1 * torch.rand(n, t, 1, size, size, generator=g)
    for i in range(n):
        y, x = torch.randint(0, size - 4, (2,), generator=g).tolist()
        dy, dx = torch.randint(-1, 2, (2,), generator=g).tolist()
        for k in range(t):
            yy, xx = (y + dy * k) % (size - 4), (x + dx * k) % (size - 4)
            frames[i, k, 0, yy:yy + 4, xx:xx + 4] = 0.6 + 0.4 * torch.rand(4, 4, generator=g)
    return frames


@pytest.fixture
def sequences() -> torch.Tensor:
    return make_sequences()


@pytest.fixture
def dataset(sequences) -> SequenceDataset:
    return SequenceDataset(sequences)


@pytest.fixture
def as_dataset():
    """Factory: ``as_dataset(frames (N, T, C, H, W))`` → :class:`SequenceDataset`."""
    return SequenceDataset
