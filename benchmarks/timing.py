"""Timing helpers shared by the benchmark scripts (``python benchmarks/<script>.py`` puts this folder on the path)."""

from __future__ import annotations

import statistics
import time

import torch

from futurelat.models.base import Latents


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock times measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train_steps(head: torch.nn.Module, z: Latents, steps: int, device: torch.device, lr: float | None = 1e-4,
                     warmup: int = 1) -> float:
    """Median seconds of one ``head(z)`` forward + backward + AdamW step over ``steps`` steps, after ``warmup`` untimed ones.

    ``lr=None``: forward + backward only, no optimizer (and no optimizer state in memory).
    """
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr) if lr is not None else None
    times = []
    for i in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        loss = head(z)["loss"]
        head.zero_grad(set_to_none=True)
        loss.backward()
        if opt is not None:
            opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)
