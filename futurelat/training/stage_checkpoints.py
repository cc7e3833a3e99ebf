"""A trainer's ``{name}_last.pt`` / ``{name}_final.pt``: writing them, and continuing a stage from ``last``.

The file format (and the atomic write) is :mod:`futurelat.training.checkpoint`'s; this module decides
what a stage stores (model, optimizer, scheduler, GradScaler, every rank's RNG state, the step, the
resolved config; with ``backbone.gan`` also the discriminator and its optimizer, ``"gan"``; with
``trainer.ema`` the averaged weights, ``"ema"`` and ``"ema_model"``) and how a :class:`~futurelat.training.trainer.Trainer` takes it back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from futurelat.training.checkpoint import (FORMAT_VERSION, capture_rng_state, load_checkpoint, save_checkpoint,
                                           state_digest)
from futurelat.training.distributed import all_gather_objects
from futurelat.training.ema import EMA
from futurelat.training.gan_step import gan_state_dict, load_gan_state

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from futurelat.training.trainer import Trainer

log = logging.getLogger(__name__)

#: Stage names of runs written before 2026-11-30 (``tokenizer`` / ``predictor``): a run directory
#: holding only their ``last`` checkpoint resumes from it under the new name.
LEGACY_STAGE_NAMES = {"backbone": "tokenizer", "head": "predictor"}


def resume_stage(trainer: Trainer) -> dict[str, Any] | None:
    """Load ``{name}_last.pt`` into ``trainer`` if present; returns this rank's RNG state to restore.

    Sets ``trainer.step`` and the module's weights; below ``max_steps`` also the optimizer,
    scheduler and GradScaler states. Returns ``None`` when starting fresh or already at ``max_steps``.

    Raises:
        FileNotFoundError: ``resume: true`` and no ``{name}_last.pt`` (``auto`` starts fresh).
        ValueError: the checkpoint is beyond ``max_steps``.
    """
    name, dist, max_steps = trainer.name, trainer.dist, trainer.schedule.max_steps
    path = trainer.checkpoint_path("last")
    legacy = path.with_name(path.name.replace(name, LEGACY_STAGE_NAMES.get(name, name), 1))
    if not path.is_file() and legacy.is_file():
        if dist.is_main:
            log.info("stage '%s': resuming from %s, written under the stage's old name", name, legacy)
        path = legacy
    if not path.is_file():
        if trainer.settings.resume is True:
            raise FileNotFoundError(f"stage '{name}': trainer.resume=true but there is no {path} to "
                                    "resume from; use trainer.resume=auto to start fresh when there is none")
        if dist.is_main:
            log.info("stage '%s': no %s yet; starting fresh", name, path)
        return None
    ckpt = load_checkpoint(path, map_location=trainer.device)
    step = int(ckpt["step"])
    if step > max_steps:
        raise ValueError(f"stage '{name}': {path} is at step {step} > max_steps={max_steps}")
    trainer.module.load_state_dict(ckpt["model"])
    trainer.step = step
    _resume_ema(trainer, ckpt, str(path))
    if step >= max_steps:
        return None
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if trainer.scaler is not None and ckpt.get("scaler") is not None:
        trainer.scaler.load_state_dict(ckpt["scaler"])
    if trainer.gan is not None:
        load_gan_state(trainer.gan, ckpt.get("gan"), str(path))
    elif ckpt.get("gan") is not None and dist.is_main:
        log.warning("stage '%s': %s was trained with backbone.gan; this run continues without it", name, path)
    rng = ckpt["rng"]
    if len(rng) != dist.world_size and dist.is_main:
        log.warning("stage '%s': %s was written by %d ranks, now %d; RNG streams will "
                    "differ from an uninterrupted run", name, path, len(rng), dist.world_size)
    if dist.is_main:
        log.info("stage '%s': resumed from %s at step %d", name, path, step)
    return rng[dist.rank % len(rng)]


def _resume_ema(trainer: Trainer, ckpt: Mapping[str, Any], path: str) -> None:
    """The EMA from the checkpoint; a checkpoint without one (written with ``trainer.ema.decay=null``)
    starts the average at its weights, with a warning."""
    if trainer.ema is None:
        if ckpt.get("ema_model") is not None and trainer.dist.is_main:
            log.warning("stage '%s': %s holds EMA weights, but trainer.ema.decay is null: this run keeps no "
                        "EMA and its checkpoints will not hold one", trainer.name, path)
        return
    if ckpt.get("ema_model") is None:
        if trainer.dist.is_main:
            log.warning("stage '%s': %s holds no EMA weights; the EMA starts at its step-%d weights",
                        trainer.name, path, int(ckpt["step"]))
        trainer.ema = EMA(trainer.module, trainer.ema.decay, trainer.ema.warmup)
        return
    trainer.ema.load_state_dict(ckpt, path)


def save_stage(trainer: Trainer, kinds: tuple[str, ...]) -> None:
    """Write ``{name}_{kind}.pt`` for each kind (collective: every rank calls it). A ``final``
    save under DDP also gathers each rank's weight digest and refuses diverged ranks.

    Raises:
        RuntimeError: (``final``) the ranks' weights differ.
    """
    dist = trainer.dist
    rng = all_gather_objects(capture_rng_state(), dist)  # collective: all ranks
    digests = all_gather_objects(state_digest(trainer.module), dist) if "final" in kinds else None
    if digests is not None and len(set(digests)) > 1:
        raise RuntimeError(f"stage '{trainer.name}': the ranks' weights differ at step {trainer.step} "
                           f"(digests {digests}); gradients were not synchronised")
    critic = trainer.gan.critic if trainer.gan is not None else None
    if "final" in kinds and critic is not None and len(set(all_gather_objects(state_digest(critic), dist))) > 1:
        raise RuntimeError(f"stage '{trainer.name}': the ranks' discriminators differ at step {trainer.step}")
    if dist.is_main:
        state = {
            "format": FORMAT_VERSION,
            "name": trainer.name,
            "step": trainer.step,
            "world_size": dist.world_size,
            "model": trainer.module.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
            "rng": rng,
            "config_yaml": trainer.config_yaml,
            "rank_digests": digests,
        }
        if trainer.gan is not None:  # only then: a run without the GAN writes what it always wrote
            state["gan"] = gan_state_dict(trainer.gan)
        if trainer.ema is not None:  # "ema" and "ema_model"
            state.update(trainer.ema.state_dict())
        for kind in kinds:
            save_checkpoint(state, trainer.checkpoint_path(kind))


def config_yaml(config: Mapping | DictConfig | None) -> str | None:
    """The resolved YAML a checkpoint stores of ``config`` (``None`` stays ``None``)."""
    if config is None:
        return None
    if not isinstance(config, DictConfig):
        config = OmegaConf.create(dict(config))
    return OmegaConf.to_yaml(config, resolve=True)
