"""Gradient (activation) checkpointing per block of a head's trunk: less memory, one more forward.

Not to be confused with model checkpoints (:mod:`futurelat.training.checkpoint`). With
checkpointing on, a block's forward keeps only its inputs; the activations inside it are
recomputed during the backward pass. A trunk of ``L`` blocks then holds ``L`` block inputs plus
one block's activations at a time instead of all ``L`` blocks' activations, for about one extra
forward pass per step (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost",
arXiv:1604.06174; the FutureLatents trainer's ``gradient_checkpointing`` option, as in Hugging
Face transformers' ``gradient_checkpointing_enable``).

The mechanism is :class:`CheckpointableBlocks`, the ``nn.ModuleList`` of a trunk's blocks (the
transformer, ``flow_dit`` and mamba heads use it for ``self.blocks``; the state-dict keys are those
of a plain ``ModuleList``). Its :meth:`~CheckpointableBlocks.run` calls a block, under
``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` when the switch is on, the module is
in training mode and autograd is recording. Evaluation, rollouts and KV-cached or recurrent
inference never checkpoint. Non-reentrant checkpointing restores the RNG state (CPU and the
inputs' CUDA devices) before recomputing, so dropout draws the same mask twice and the gradients
equal those of the plain run (bit for bit on CPU, ``tests/models/test_checkpointing.py``).
:func:`set_gradient_checkpointing` switches every such list inside a module
(``trainer.gradient_checkpointing: true`` calls it on the stage's module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class CheckpointableBlocks(nn.ModuleList):
    """A trunk's blocks, whose calls can be checkpointed; off (``gradient_checkpointing = False``) by default."""

    def __init__(self, blocks: Any = None):
        super().__init__(blocks)
        self.gradient_checkpointing = False

    def run(self, fn: Callable[..., Any], *args: Any, enabled: bool = True, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, recomputed in backward when checkpointing applies.

        Args:
            fn: one block, or a function of one layer (e.g. a block with the convs before it);
                its tensor inputs and outputs may be of any shape, and it may return a tuple.
            enabled: ``False`` forces a plain call, e.g. when ``fn`` appends to a KV cache (a
                recompute would append twice).

        Checkpointing applies when ``self.gradient_checkpointing and enabled``, the list is in
        training mode and ``torch.is_grad_enabled()``.
        """
        if self.gradient_checkpointing and enabled and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False, **kwargs)
        return fn(*args, **kwargs)


def set_gradient_checkpointing(module: nn.Module, enabled: bool = True) -> int:
    """Switch checkpointing on (or off) for every :class:`CheckpointableBlocks` inside ``module``.

    Returns:
        The number of blocks switched (0: ``module`` has no checkpointable trunk, e.g. a VQ-VAE).
    """
    count = 0
    for sub in module.modules():
        if isinstance(sub, CheckpointableBlocks):
            sub.gradient_checkpointing = enabled
            count += len(sub)
    return count
