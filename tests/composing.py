"""Compose the real configs in configs/ as ``python -m futurelat.main`` would, for tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))

#: Overrides that shrink any job to seconds: tiny heads, 2 steps, 4 test sequences, CPU.
TINY_COMMON = [
    "logger=none",
    "trainer.device=cpu",
    "trainer.precision=fp32",
    "trainer.progress=false",
    "trainer.log_every=1",
    "trainer.tokenizer.max_steps=2",
    "trainer.tokenizer.batch_size=2",
    "trainer.tokenizer.warmup_steps=1",
    "trainer.predictor.max_steps=2",
    "trainer.predictor.batch_size=2",
    "trainer.predictor.warmup_steps=1",
    "dataset.test_sequences=4",
    "eval.batch_size=2",
    "eval.num_visualize=2",
    "head.params.d_model=32",      # keys every head has; head-specific sizes keep their defaults
    "head.params.num_layers=1",
]
#: Per backbone config: the overrides that make it tiny (vjepa2_tiny is tiny already).
TINY_BACKBONE = {
    "vqvae": ["backbone.params.hidden_channels=8", "backbone.params.latent_dim=8", "backbone.params.codebook_size=32"],
}
#: The default job (vqvae) made tiny.
TINY = TINY_COMMON + TINY_BACKBONE["vqvae"]


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """``configs/main.yaml`` composed with Hydra ``overrides`` (and the ``hydra`` node if asked)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="main", overrides=list(overrides or []), return_hydra_config=return_hydra_config)


def tiny_config(extra: list[str] | None = None) -> DictConfig:
    """The default config with :data:`TINY` overrides and the chosen backbone's
    :data:`TINY_BACKBONE` overrides (the backbone named by a ``backbone=NAME`` in ``extra``, else
    vqvae), then ``extra``."""
    extra = list(extra or [])
    backbone = next((o.split("=", 1)[1] for o in reversed(extra) if o.startswith("backbone=")), "vqvae")
    return compose_config(TINY_COMMON + TINY_BACKBONE.get(backbone, []) + extra)
