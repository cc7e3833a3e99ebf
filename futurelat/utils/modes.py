"""Switching modules to eval mode for a block and restoring their previous modes afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run the block with every module in eval mode (dropout off); restore each module's mode after.

    The previous ``training`` flag of every submodule is restored, also when the block raises::

        with eval_mode(head):
            future = head.rollout(context, 10)
    """
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


@contextmanager
def eval_mode_on(model: Any, device: torch.device | str) -> Iterator[None]:
    """Move ``model`` to ``device`` and run the block with it in :func:`eval_mode`.

    Anything that is not an ``nn.Module`` (e.g. a baseline function) is left alone.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    model.to(device)
    with eval_mode(model):
        yield
