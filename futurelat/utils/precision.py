"""Mixed precision: the names configs use (``trainer.precision``, ``cache.precision``) and their autocast."""

from __future__ import annotations

import contextlib

import torch

#: ``precision`` name → autocast dtype (``None``: no autocast, float32). ``fp16`` needs CUDA
#: when gradients flow (``torch.amp.GradScaler``); each caller checks that itself.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type with ``precision``'s dtype; a no-op context for ``fp32``.

    Raises:
        KeyError: ``precision`` not in :data:`PRECISIONS` (the message lists them).
    """
    if precision not in PRECISIONS:
        raise KeyError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
