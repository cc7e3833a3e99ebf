"""Tiny modules, datasets and a spawn worker shared by the tests in tests/training/."""

from __future__ import annotations

import datetime
import os

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import Dataset

W_TRUE = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 1.5], [-1.0, 1.0]])


class ToyRegression(Dataset):
    """``n`` items ``{"x": (4,), "y": (2,)}`` with ``y = x @ W_TRUE + 0.3`` (fixed seed)."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ W_TRUE + 0.3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class ToyRegressor(nn.Module):
    """MLP with a LayerNorm and optional dropout; returns ``loss`` (MSE) and ``mae``.

    Records each forward's local loss in ``self.losses`` (floats).
    """

    def __init__(self, dropout: float = 0.0, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.LayerNorm(hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, 2))
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = self.net(x)
        loss = F.mse_loss(pred, y)
        self.losses.append(loss.item())
        return {"loss": loss, "mae": (pred - y).abs().mean()}


class ListLogger:
    """Collects ``(step, metrics)`` pairs."""

    def __init__(self):
        self.records: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.records.append((step, dict(metrics)))


def trainer_cfg(**overrides):
    base = dict(device="cpu", precision="fp32", grad_clip=1.0, weight_decay=0.05,
                betas=[0.9, 0.95], log_every=1, ckpt_every=0, resume=False, num_workers=0,
                seed=0, grad_accum_steps=1, progress=False)
    base.update(overrides)
    return OmegaConf.create(base)


def stage_cfg(**overrides):
    base = dict(max_steps=12, batch_size=8, lr=1e-2, warmup_steps=2, min_lr_ratio=0.1)
    base.update(overrides)
    return OmegaConf.create(base)


DDP_STEPS = 6
DDP_BATCH = 4
DDP_ACCUM = 2


def ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    """One rank of the 2-process gloo test: DDP-train a ToyRegressor, save results.

    The ranks meet through a file in ``out_dir`` (no TCP port that another test could take)."""
    torch.set_num_threads(1)
    from futurelat.training.distributed import cleanup_distributed, init_distributed
    from futurelat.training.trainer import Trainer

    cleanup_distributed()  # a forked child inherits the parent's cached single-process DistInfo
    torch.distributed.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'rendezvous')}",
                                         rank=rank, world_size=world_size,
                                         timeout=datetime.timedelta(seconds=60))
    info = init_distributed("cpu")
    assert info.world_size == world_size and info.rank == rank
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    module = ToyRegressor()
    logger = ListLogger() if info.is_main else None
    trainer = Trainer(module, ToyRegression(), trainer_cfg(grad_accum_steps=DDP_ACCUM),
                      stage_cfg(max_steps=DDP_STEPS, batch_size=DDP_BATCH),
                      run_dir=out_dir, name="toy", logger=logger, dist=info)
    trained = trainer.fit()
    torch.save({"params": {k: v.detach().clone() for k, v in trained.state_dict().items()},
                "local_losses": module.losses,
                "logged": logger.records if logger else None},
               os.path.join(out_dir, f"rank{rank}.pt"))
    cleanup_distributed()
