"""AdamW with weight-decay groups and a linear-warmup + cosine learning-rate schedule.

Both follow nanoGPT (Karpathy, https://github.com/karpathy/nanoGPT, ``configure_optimizers``
and ``get_lr``): parameters with ``dim() >= 2`` (weight matrices, conv kernels, embedding
tables) get weight decay; 1-d parameters (biases, norm gains) and scalars do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split ``module``'s trainable parameters into a decay and a no-decay group.

    Only parameters with ``requires_grad`` are included; shared parameters appear once.

    Returns:
        ``[{"name": "decay", "params": [...], "weight_decay": weight_decay},
        {"name": "no_decay", "params": [...], "weight_decay": 0.0}]`` (empty groups dropped).

    Raises:
        ValueError: if ``module`` has no trainable parameter.
    """
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError(f"{type(module).__name__} has no parameter with requires_grad=True")
    groups = [
        {"name": "decay", "params": decay, "weight_decay": float(weight_decay)},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(module: nn.Module, lr: float, weight_decay: float,
                    betas: Sequence[float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over :func:`param_groups` (peak learning rate ``lr``).

    Raises:
        ValueError: ``lr <= 0``, ``weight_decay < 0``, ``betas`` not two values in ``[0, 1)``,
            or no trainable parameter.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    betas = tuple(float(b) for b in betas)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two values in [0, 1); got {betas}")
    return torch.optim.AdamW(param_groups(module, weight_decay), lr=float(lr), betas=betas)


def warmup_cosine(step: int, *, max_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier (of the peak lr) for 0-based optimizer step ``step``.

    - warmup, ``step < warmup_steps``: ``(step + 1) / warmup_steps`` (linear, never 0);
    - then cosine from 1 at ``step = warmup_steps`` down to ``min_lr_ratio`` at
      ``step = max_steps`` (held there afterwards).

    Returns:
        a float in ``[min_lr_ratio, 1]`` (in ``(0, 1]`` during warmup).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, *, max_steps: int, warmup_steps: int,
                    min_lr_ratio: float) -> LambdaLR:
    """``LambdaLR`` applying :func:`warmup_cosine`; call ``.step()`` after each optimizer step.

    The schedule itself is not stored in ``state_dict()`` (only its position), so a
    resumed run follows the schedule of its own config.

    Raises:
        ValueError: ``max_steps <= 0``, ``warmup_steps`` outside ``[0, max_steps]`` or
            ``min_lr_ratio`` outside ``[0, 1]``.
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be > 0; got {max_steps}")
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps must be in [0, max_steps={max_steps}]; got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1]; got {min_lr_ratio}")

    def lr_lambda(step: int) -> float:
        return warmup_cosine(step, max_steps=max_steps, warmup_steps=warmup_steps,
                             min_lr_ratio=min_lr_ratio)

    return LambdaLR(optimizer, lr_lambda)
