"""An exponential moving average (EMA) of a module's weights, kept beside the trained ones.

Diffusion and autoregressive image models sample from an EMA copy of their weights (DiT, Peebles &
Xie 2023, arXiv:2212.09748, decay 0.9999; Karras et al. 2024, arXiv:2312.02696, study its length):
the average of the last few thousand updates lies in a flatter, less noisy spot than the last
iterate. The bookkeeping is ``torch.optim.swa_utils.AveragedModel`` (a copy of the module, its
parameters and floating-point buffers averaged); the rule is

    ema ← d_n · ema + (1 − d_n) · θ,   d_n = min(decay, (1 + n) / (10 + n))

after optimizer update ``n`` (0-based; update 0 copies ``θ``). The warm-up factor ``(1 + n) / (10 +
n)`` is TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: a short run's average is not
dominated by the random initialization (with ``decay = 0.999`` and no warm-up, the initial weights
still hold 50 % of the average after 693 steps). ``warmup: false`` uses ``decay`` from the first update.

Config: ``trainer.ema`` (:class:`futurelat.config.trainer.EMASettings`): ``decay`` (null = off),
``stages`` (which stages keep one; default the head), ``warmup``. Evaluation uses the EMA weights
when the run kept them, ``eval.weights=raw`` the trained ones (:func:`eval_weights_key`).
Checkpoints hold ``ema_model`` (a state dict with the module's own keys, so it loads into the module
directly) and ``ema`` (``{"decay", "warmup", "updates"}``), and a resumed run continues the average
exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

log = logging.getLogger(__name__)

#: ``eval.weights`` values: the EMA when the checkpoint has one (``auto``), the EMA or an error, the trained weights.
EVAL_WEIGHTS = ("auto", "ema", "raw")


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay ``d_n`` applied at update ``n = updates`` (see the module docstring), in ``[0, decay]``."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


class EMA:
    """The EMA of ``module``'s parameters and floating-point buffers.

    Args:
        module: the module being trained (its current weights are copied now).
        decay: ``decay`` in (0, 1), e.g. 0.999 (an average over roughly the last 1,000 updates).
        warmup: use ``d_n`` of the module docstring (default), else ``decay`` throughout.

    Raises:
        ValueError: ``decay`` outside (0, 1).
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"trainer.ema.decay must be in (0, 1) or null; got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.updates = 0
        self.averaged = AveragedModel(module, multi_avg_fn=self._average, use_buffers=True)
        self.averaged.requires_grad_(False)

    def _average(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor | int) -> None:
        """``AveragedModel``'s hook (update ``num_averaged >= 1``): ``ema ← lerp(ema, θ, 1 − d_n)`` in place."""
        if not averaged[0].is_floating_point():  # (one dtype per call) integer buffers: the current value
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1.0 - ema_decay(self.decay, self.updates, self.warmup))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Fold ``module``'s current weights into the average (call after each optimizer update)."""
        self.averaged.update_parameters(module)
        self.updates += 1

    @property
    def module(self) -> nn.Module:
        """The averaged copy (same class and state-dict keys as the trained module)."""
        return self.averaged.module

    def state_dict(self) -> dict[str, Any]:
        """``{"ema": {"decay", "warmup", "updates"}, "ema_model": <the averaged module's state dict>}``."""
        return {"ema": {"decay": self.decay, "warmup": self.warmup, "updates": self.updates},
                "ema_model": self.module.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any], where: str) -> None:
        """Restore from a checkpoint's ``ema`` / ``ema_model`` entries (written by :meth:`state_dict`).

        Raises:
            KeyError: the checkpoint ``where`` holds no EMA (the run kept none); the message says how to go on.
        """
        if state.get("ema_model") is None or state.get("ema") is None:
            raise KeyError(f"{where} holds no EMA weights (it was written with trainer.ema.decay=null); "
                           "resume with trainer.ema.decay=null, or start this stage afresh")
        meta = state["ema"]
        if float(meta["decay"]) != self.decay:
            log.warning("%s: EMA decay %s, this run %s; the average continues with %s", where, meta["decay"],
                        self.decay, self.decay)
        self.module.load_state_dict(state["ema_model"])
        self.updates = int(meta["updates"])
        self.averaged.n_averaged.fill_(self.updates)

    def copy_to(self, module: nn.Module) -> nn.Module:
        """Overwrite ``module``'s weights with the average; returns ``module``."""
        module.load_state_dict(self.module.state_dict())
        return module


def check_eval_weights(choice: str) -> None:
    """Raise ``ValueError`` unless ``choice`` (``eval.weights``) is one of :data:`EVAL_WEIGHTS`."""
    if choice not in EVAL_WEIGHTS:
        raise ValueError(f"eval.weights must be one of {EVAL_WEIGHTS}; got {choice!r}")


def eval_weights_key(choice: str, has_ema: bool, where: str) -> str:
    """Which checkpoint entry evaluation loads: ``"ema_model"`` or ``"model"``.

    Args:
        choice: ``eval.weights``, one of :data:`EVAL_WEIGHTS`.
        has_ema: the run (or checkpoint) kept an EMA.
        where: names the run or file in messages.

    Raises:
        ValueError: an unknown ``choice``, or ``ema`` when there is none.
    """
    check_eval_weights(choice)
    if choice == "ema" and not has_ema:
        raise ValueError(f"eval.weights=ema, but {where} kept no EMA weights (trainer.ema.decay was null); "
                         "use eval.weights=auto or raw")
    return "ema_model" if has_ema and choice != "raw" else "model"
