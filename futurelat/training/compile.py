"""``trainer.compile``: train a head's trunk through ``torch.compile``, falling back to eager mode.

The trunk's training forward (the blocks over a whole clip, :class:`~futurelat.models.heads.composed.ComposedHead`'s
``objective.loss(trunk, z)``) is a long chain of small element-wise operations on CPU: the Mamba
mixer's gates, norms and the chunked scan. TorchInductor fuses them into generated C++ (CPU) or Triton
(CUDA) kernels (Ansel et al. 2024, "PyTorch 2", ASPLOS). Only that forward and its backward are
compiled: rollouts (``prefill``, ``step``) and evaluation run eagerly, so a new batch shape at
evaluation costs no recompilation, and the weights, their names and the checkpoints are those of the
eager trunk (the compiled view shares its parameters; it is not registered as a submodule).

The first training step compiles (tens of seconds on 2 CPU cores; Inductor's on-disk cache makes a
later run of the same shapes start in seconds). A compiler that cannot run here (no C++ compiler, an
unsupported operation) logs a warning and the stage trains eagerly; an error of the trunk itself is
raised again by the eager call. Figures: docs/results.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class CompiledTrunk:
    """A trunk's forward through ``torch.compile``, with the trunk's other attributes as they are.

    Calls go to the compiled forward; on the first call, an exception from compiling (or from the
    trunk) switches this wrapper to the eager trunk for good, after a warning. Attribute access
    (``step``, ``prefill``, ``grid``...) reaches the eager trunk.

    Args:
        trunk: the eager trunk (``nn.Module``); its parameters are trained either way.
        where: names the stage and head in the warning.
    """

    def __init__(self, trunk: nn.Module, where: str):
        self.trunk, self.where = trunk, where
        self.compiled: Any = torch.compile(trunk)
        self.calls = 0

    @property
    def eager(self) -> bool:
        """Whether compilation failed and calls run the eager trunk."""
        return self.compiled is None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.compiled is None:
            return self.trunk(*args, **kwargs)
        if self.calls > 1:
            return self.compiled(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any compiler failure; the eager call re-raises the trunk's own
            log.warning("%s: torch.compile of the %s failed (%s: %s); training continues eagerly "
                        "(trainer.compile=false silences this)", self.where, type(self.trunk).__name__,
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            self.compiled = None
            return self.trunk(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trunk, name)


@contextlib.contextmanager
def compiled_trunks(module: nn.Module, enabled: bool, where: str) -> Iterator[int]:
    """While the context lasts, every composed head in ``module`` trains through a compiled trunk.

    Yields the number of heads switched (0 when ``enabled`` is false or ``module`` has none, e.g. a
    tokenizer). On exit the heads train eagerly again.
    """
    heads = [m for m in module.modules() if callable(getattr(m, "set_training_trunk", None))] if enabled else []
    for head in heads:
        head.set_training_trunk(CompiledTrunk(head.trunk, where))
    try:
        yield len(heads)
    finally:
        for head in heads:
            head.set_training_trunk(None)
