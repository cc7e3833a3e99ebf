"""Timing helpers shared by the benchmark scripts (``python benchmarks/<script>.py`` puts this folder on the path)."""

from __future__ import annotations

import time

import torch

from futurelat.models.base import Latents


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock times measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train_steps(head: torch.nn.Module, z: Latents, steps: int, device: torch.device, lr: float = 1e-4) -> float:
    """Mean seconds of one ``head(z)`` forward + backward + AdamW step over ``steps`` steps, after one warm-up."""
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    times = []
    for i in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        loss = head(z)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i:  # step 0 is warm-up
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)
