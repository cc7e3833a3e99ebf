"""Switching a module to eval mode for a block and restoring its previous mode afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
