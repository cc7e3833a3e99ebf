"""Seeding every random number generator a run draws from."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    NumPy's global generator takes seeds in ``[0, 2**32)``; ``seed`` is reduced modulo ``2**32``
    for it, which leaves every seed in that range unchanged (``np.random.seed(seed)``). Python
    and torch receive ``seed`` itself (``torch.manual_seed`` also seeds every CUDA device).

    Args:
        seed: any int; the run's ``seed`` (``python -m futurelat.main``) or ``trainer.seed + rank``.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
