"""Datasets, by the short name used in ``configs/dataset/*.yaml`` (``dataset.name``).

Every dataset is map-style and yields dicts ``{"frames": (T, C, H, W) float in [0, 1]}``. The names
and their builders are listed in :data:`futurelat.registry.DATASETS`.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch.utils.data import Dataset

from futurelat.registry import DATASETS


def build_dataset(cfg: DictConfig, split: str) -> Dataset:
    """The ``split`` ("train" or "test") of the dataset ``cfg.name``.

    Raises:
        KeyError: unknown ``dataset.name`` (lists the valid ones).
    """
    return DATASETS.get(cfg.name)(cfg, split)
