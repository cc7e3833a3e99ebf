"""A head made of two parts: a *trunk* (features) and an *objective* (loss and rollout).

Shape notation: ``B`` batch, ``T`` latent frames, ``N = h * w`` tokens per latent frame, ``D``
latent channels, ``d`` trunk width; latents ``(B, T, N, D)`` float, codes ``(B, T, N)`` int64.

- A trunk (:mod:`futurelat.models.heads.trunks`) maps a sequence of embedded tokens to features
  of the same shape and keeps the recurrent state (Mamba) or KV cache (transformer) of a rollout.
- An objective (:mod:`futurelat.models.heads.objectives`) owns the input and output layers
  (embeddings, projections), the training loss and the rollout; it runs on any trunk that fits
  (its docstring says which), which it receives as the first argument of every call.

:class:`ComposedHead` joins one of each into a :class:`~futurelat.models.base.Head`. The heads
named in configs (``mamba``, ``transformer``, ``flow_dit``) are subclasses that build the pair
from ``head.params`` and initialize its weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from futurelat.models.base import Head, Latents
from futurelat.utils.modes import eval_mode

#: The parts of a composed head; checkpoints written before the split had their children at the top.
PARTS = ("trunk", "objective")


def check_latents(latents: Tensor, where: str, tokens_per_frame: int, latent_dim: int, frames: int,
                  exact: bool) -> Tensor:
    """Return ``latents`` if they are a float tensor ``(B, T, N, D)`` with ``T == frames`` (``exact``)
    or ``T >= frames``.

    Args:
        where: names the tensor in the message, e.g. ``"mamba head: z.latents"``.

    Raises:
        ValueError: another dtype, rank, ``N``, ``D`` or frame count; the message gives the expected
            and the actual shape.
    """
    n, d, shape = tokens_per_frame, latent_dim, tuple(latents.shape)
    if (len(shape) != 4 or not latents.is_floating_point() or shape[2:] != (n, d)
            or (shape[1] != frames if exact else shape[1] < frames)):
        need = f"T == {frames}" if exact else f"T >= {frames}"
        raise ValueError(f"{where} must be a float tensor (B, T, N={n}, D={d}) with {need}; "
                         f"got dtype={latents.dtype}, shape={shape}")
    return latents


def _load_legacy_keys(module: "ComposedHead", state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load-time hook: a checkpoint of the head before its split (``blocks.0...``, ``standardizer.mean``)
    gets the part's prefix (``trunk.blocks.0...``, ``objective.standardizer.mean``); names are unchanged below it."""
    owners = {}
    for part in PARTS:
        child = getattr(module, part)
        for name in (*child._modules, *child._parameters, *child._buffers):
            owners[name] = part
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        first = key[len(prefix):].split(".", 1)[0]
        if first not in PARTS and first in owners:
            state_dict[f"{prefix}{owners[first]}.{key[len(prefix):]}"] = state_dict.pop(key)


class ComposedHead(Head):
    """A :class:`~futurelat.models.base.Head` that is a trunk plus an objective.

    Either pass both (``ComposedHead(trunk, objective)``: the objective's ``check_trunk``, where it
    has one, refuses a trunk that does not fit), or, in a subclass, call ``super().__init__()`` and
    set ``self.trunk`` and ``self.objective`` in the order their parameters should be listed.
    ``self.sampling`` holds the options handed to the objective's rollout, ``self.name`` names the
    head in messages, ``self.needs_codes`` is the objective's. State-dict keys are ``trunk.*`` and
    ``objective.*``; a checkpoint written before the split (the same names without those prefixes)
    loads too.

    Raises:
        ValueError: the objective does not fit the trunk.
    """

    trunk: nn.Module
    objective: nn.Module
    name: str = "composed"

    def __init__(self, trunk: nn.Module | None = None, objective: nn.Module | None = None, *,
                 name: str | None = None) -> None:
        super().__init__()
        self.sampling: dict[str, Any] = {}
        if name is not None:
            self.name = name
        if trunk is not None and objective is not None:
            if hasattr(objective, "check_trunk"):
                objective.check_trunk(trunk)
            self.trunk, self.objective = trunk, objective
            self.needs_codes = objective.needs_codes
        self.register_load_state_dict_pre_hook(_load_legacy_keys)

    @property
    def blocks(self) -> nn.ModuleList:
        """The trunk's blocks (:class:`~futurelat.models.heads.checkpointing.CheckpointableBlocks`)."""
        return self.trunk.blocks

    @property
    def deterministic(self) -> bool:
        """Whether :meth:`rollout` gives the same future on every call with ``self.sampling`` (the
        objective's ``deterministic(sampling)``; false for an objective that does not say)."""
        check = getattr(self.objective, "deterministic", None)
        return bool(check(self.sampling)) if callable(check) else False

    def set_training_trunk(self, trunk: Any | None) -> None:
        """Run :meth:`forward` in training mode through ``trunk``, a callable view of ``self.trunk``
        with the same parameters (:class:`~futurelat.training.compile.CompiledTrunk`); ``None``:
        ``self.trunk`` itself. Kept out of the submodules: state dicts and copies do not see it."""
        self.__dict__["_training_trunk"] = trunk

    def forward(self, z: Latents) -> dict[str, Tensor]:
        """Training losses for a clip ``z`` (see the objective's ``loss``); key ``"loss"``."""
        trunk = self.__dict__.get("_training_trunk") if self.training else None
        return self.objective.loss(trunk if trunk is not None else self.trunk, z)

    @torch.no_grad()
    def rollout(self, context: Latents, num_future: int, *, generator: torch.Generator | None = None) -> Latents:
        """Predict ``num_future`` latent frames after ``context`` with ``self.sampling``.

        Runs in eval mode (dropout off) and restores every submodule's mode. See the objective's
        ``rollout`` for shapes.

        Raises:
            ValueError: ``num_future < 1``, or a bad context / ``self.sampling`` (the objective says which).
        """
        if num_future < 1:
            raise ValueError(f"{self.name} head: num_future must be >= 1; got {num_future}")
        with eval_mode(self):
            return self.objective.rollout(self.trunk, context, num_future, sampling=self.sampling,
                                          generator=generator)
