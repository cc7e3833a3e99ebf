"""Datasets, by the short name used in ``configs/dataset/*.yaml`` (``dataset.name``).

Every dataset is map-style and yields dicts ``{"frames": (T, C, H, W) float in [0, 1]}``.
"""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig
from torch.utils.data import Dataset


def _moving_mnist(cfg: DictConfig, split: str) -> Dataset:
    from futurelat.datasets.moving_mnist import build_moving_mnist

    return build_moving_mnist(cfg, split)


def _kinetics_400(cfg: DictConfig, split: str) -> Dataset:
    from futurelat.datasets.kinetics import build_kinetics

    return build_kinetics(cfg, split)


def _latent_cache(cfg: DictConfig, split: str) -> Dataset:
    from futurelat.datasets.latent_cache import build_latent_cache

    return build_latent_cache(cfg, split)


DATASETS: dict[str, Callable[[DictConfig, str], Dataset]] = {
    "moving_mnist": _moving_mnist,
    "kinetics_400": _kinetics_400,
    "kinetics_400_cached": _latent_cache,  # latents written by `python -m futurelat.cache`
    "latent_cache": _latent_cache,         # the same reader, for a cache of any source
}


def build_dataset(cfg: DictConfig, split: str) -> Dataset:
    """The ``split`` ("train" or "test") of the dataset ``cfg.name``.

    Raises:
        KeyError: unknown ``dataset.name`` (lists the valid ones).
    """
    if cfg.name not in DATASETS:
        raise KeyError(f"unknown dataset '{cfg.name}'; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[cfg.name](cfg, split)
