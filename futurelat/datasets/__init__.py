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


DATASETS: dict[str, Callable[[DictConfig, str], Dataset]] = {
    "moving_mnist": _moving_mnist,
}


def build_dataset(cfg: DictConfig, split: str) -> Dataset:
    """The ``split`` ("train" or "test") of the dataset ``cfg.name``.

    Raises:
        KeyError: unknown ``dataset.name`` (lists the valid ones).
    """
    if cfg.name not in DATASETS:
        raise KeyError(f"unknown dataset '{cfg.name}'; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[cfg.name](cfg, split)
