"""A tiny autoencoder (any module with the GAN contract, not a futurelat Backbone), its clips, and a
2-rank DDP worker, for the GAN trainer tests."""

from __future__ import annotations

import datetime
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from _training_toys import ListLogger, stage_cfg, trainer_cfg
from futurelat.models.gan.build import build_gan

#: backbone.gan of the tests: a 2-stage patch discriminator 4 channels wide.
TOY_GAN = dict(enabled=True, channels=4, num_layers=2, start_step=2)


class ToyClips(Dataset):
    """``n`` items ``{"frames": (2, 1, 8, 8)}`` in [0, 1] (fixed seed)."""

    def __init__(self, n: int = 32):
        g = torch.Generator().manual_seed(0)
        self.frames = torch.rand(n, 2, 1, 8, 8, generator=g).round() * 0.8 + 0.1

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"frames": self.frames[i]}


class ToyAutoencoder(nn.Module):
    """Per-frame conv autoencoder ``(B, T, 1, 8, 8)`` → same, with dropout (an RNG to resume exactly).

    ``forward(frames, return_reconstruction=False)`` → ``{"loss": L1, "l1"}`` (+ ``"reconstruction"``);
    ``last_decoder_layer()``: the decoder's weight. Counts its forward passes in ``calls``."""

    has_decoder = True

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(dropout))
        self.decoder = nn.ConvTranspose2d(6, 1, 4, stride=2, padding=1)
        self.calls = 0

    def last_decoder_layer(self) -> Tensor:
        return self.decoder.weight

    def forward(self, frames: Tensor, return_reconstruction: bool = False) -> dict[str, Tensor]:
        self.calls += 1
        b = frames.shape[0]
        recon = torch.sigmoid(self.decoder(self.encoder(frames.flatten(0, 1)))).unflatten(0, (b, -1))
        l1 = F.l1_loss(recon, frames)
        out = {"loss": l1, "l1": l1.detach()}
        if return_reconstruction:
            out["reconstruction"] = recon
        return out


DDP_STEPS, DDP_BATCH, DDP_ACCUM = 4, 4, 2


def gan_ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    """One rank of the 2-process gloo GAN test: two runs (fixed weight; adaptive weight), each saved."""
    torch.set_num_threads(1)
    from futurelat.training.distributed import cleanup_distributed, init_distributed
    from futurelat.training.trainer import Trainer

    cleanup_distributed()
    torch.distributed.init_process_group("gloo", init_method=f"file://{os.path.join(out_dir, 'rendezvous')}",
                                         rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
    info = init_distributed("cpu")
    for run, adaptive in (("fixed", False), ("adaptive", True)):
        torch.manual_seed(0)  # the same initial weights as the single-process reference
        module = ToyAutoencoder(dropout=0.0)
        gan = build_gan({**TOY_GAN, "start_step": 1, "adaptive_weight": adaptive}, in_channels=1)
        if rank == 1:  # DDP must broadcast rank 0's weights
            with torch.no_grad():
                for p in [*module.parameters(), *gan.critic.parameters()]:
                    p.add_(1.0)
        logger = ListLogger() if info.is_main else None
        trainer = Trainer(module, ToyClips(), trainer_cfg(grad_accum_steps=DDP_ACCUM),
                          stage_cfg(max_steps=DDP_STEPS, batch_size=DDP_BATCH), run_dir=os.path.join(out_dir, run),
                          name="backbone", logger=logger, dist=info, gan=gan)
        trained = trainer.fit()
        torch.save({"model": {k: v.detach().clone() for k, v in trained.state_dict().items()},
                    "critic": {k: v.detach().clone() for k, v in trainer.gan.critic.state_dict().items()},
                    "logged": logger.records if logger else None},
                   os.path.join(out_dir, f"{run}_rank{rank}.pt"))
    cleanup_distributed()
