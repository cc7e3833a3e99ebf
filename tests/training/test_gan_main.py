"""``python -m futurelat.main`` with ``backbone.gan.enabled=true`` on the VQ-VAE, shrunk to seconds."""

from __future__ import annotations

import json
import math

from composing import ROOT, TINY, tiny_config
from running import run_main
from futurelat.config.gan import GANConfig
from futurelat.training.checkpoint import load_checkpoint


def test_gan_config_composes_off_by_default():
    cfg = tiny_config()
    assert GANConfig.from_cfg(cfg.backbone.gan) == GANConfig()
    on = tiny_config(["backbone.gan.enabled=true", "backbone.gan.discriminator=style3d", "backbone.gan.optimizer.lr=3e-4"])
    assert on.backbone.gan.enabled and on.backbone.gan.optimizer.lr == 3e-4


def test_main_trains_the_vqvae_as_a_gan(tmp_path):
    run_dir = tmp_path / "run"
    result = run_main([*TINY, f"hydra.run.dir={run_dir}", "backbone.gan.enabled=true", "backbone.gan.channels=8",
                       "backbone.gan.start_step=1", "backbone.gan.adaptive_weight=true",
                       "trainer.backbone.max_steps=3"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    backbone = [x for x in lines if x["stage"] == "backbone"]
    assert [x["step"] for x in backbone] == [1, 2, 3]
    assert "backbone/d_loss" not in backbone[0]  # start_step=1: the first step is the plain autoencoder's
    for key in ("d_loss", "g_adv", "gan_weight", "logits_real", "logits_fake", "lecam", "ae_loss"):
        assert math.isfinite(backbone[-1][f"backbone/{key}"]), key
    ckpt = load_checkpoint(run_dir / "checkpoints" / "backbone_final.pt")
    assert ckpt["gan"]["scheduler"]["last_epoch"] == 2 and "lecam.ema_real" in ckpt["gan"]["critic"]
    assert not any(k.startswith("discriminator") for k in ckpt["model"])  # the backbone's weights alone
    assert "gan" not in load_checkpoint(run_dir / "checkpoints" / "head_final.pt")
    assert math.isfinite(json.loads((run_dir / "metrics.json").read_text())["test/mse"])
