"""Compose the real configs in configs/ as ``python -m futurelat.main`` would, for tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from futurelat.config import check_config, register_configs

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))

#: configs/debug/tiny.yaml without its backbone- and dataset-specific parts: shrinks any job to
#: seconds (tiny heads, 2 steps, CPU, no tracker).
TINY_COMMON = ["+debug=tiny", "debug/backbone@backbone=none", "debug/dataset@dataset=none"]
#: The default job (Moving MNIST, vqvae) made tiny: configs/debug/tiny.yaml as a user selects it.
TINY = ["+debug=tiny"]

register_configs()


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """``configs/main.yaml`` composed with Hydra ``overrides`` (and the ``hydra`` node if asked),
    checked as ``python -m futurelat.main`` checks it (:func:`futurelat.config.check_config`)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="main", overrides=list(overrides or []), return_hydra_config=return_hydra_config)
    return check_config(cfg)


def tiny_config(extra: list[str] | None = None) -> DictConfig:
    """The config of ``extra`` shrunk by ``+debug=tiny`` (added after ``extra``'s presets, so it wins
    over them), without its vqvae sizes when ``extra`` chooses another ``backbone=NAME``."""
    extra = list(extra or [])
    backbone = next((o.split("=", 1)[1] for o in reversed(extra) if o.startswith("backbone=")), "vqvae")
    tiny = TINY + ([] if backbone == "vqvae" else ["debug/backbone@backbone=none"])
    return compose_config(extra + tiny)
