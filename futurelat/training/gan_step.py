"""The GAN step of a :class:`~futurelat.training.trainer.Trainer` (``backbone.gan``): two optimizers,
the generator's (the backbone's, ``trainer.backbone``) and the discriminator's (``backbone.gan.optimizer``).

One optimizer step, ``grad_accum_steps`` micro-batches:

1. **generator**: the backbone's ``forward(frames, return_reconstruction=True)``; its ``loss`` plus
   ``perceptual_weight ·`` the perceptual loss, plus from ``start_step`` on ``weight · g_adv``, the
   adversarial loss of the (frozen for this pass) discriminator's logits of the reconstruction.
   ``weight`` is ``generator_weight``, or with ``adaptive_weight`` that times VQGAN's ratio of the two
   losses' gradient norms at the decoder's last layer (``torch.autograd.grad``, which fires no DDP
   hook; the norms are averaged over ranks so every rank uses one weight). Backward, clip, AdamW step.
2. **discriminator** (from ``start_step`` on): real frames and the detached reconstructions of the same
   micro-batches (from before the generator's update), in one forward pass; ``d_loss + lecam_weight ·
   LeCam``; backward, clip (``trainer.grad_clip``), AdamW step, its own schedule (warmup + cosine over
   ``max_steps - start_step``); then the LeCam EMAs move with the step's rank-mean logits.

Before ``start_step`` the discriminator neither trains nor is asked. DDP: the backbone and the critic
are each wrapped; during the generator pass the critic's parameters have ``requires_grad=False``, so
its DDP hooks stay silent. AMP: autocast for every forward; with fp16 each optimizer has its own
GradScaler. The critic, its optimizer, scheduler and scaler are in ``{stage}_last.pt`` under ``"gan"``
(:func:`gan_state_dict`); a resumed run continues bit-identically. Logged besides the backbone's
values: ``loss`` (the generator's whole objective), ``ae_loss`` (the backbone's own ``loss``),
``perceptual``, and from ``start_step`` ``g_adv``, ``gan_weight``, ``d_loss``, ``lecam``,
``logits_real``, ``logits_fake``, ``d_grad_norm``, ``d_lr``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from futurelat.config.gan import GANConfig
from futurelat.models.gan.build import GAN, Critic
from futurelat.models.gan.losses import adaptive_weight, discriminator_loss, generator_loss, grad_norm_at
from futurelat.models.gan.perceptual import PerceptualLoss
from futurelat.training.distributed import all_reduce_mean
from futurelat.training.optim import build_optimizer, build_scheduler
from futurelat.training.preemption import StopSignals
from futurelat.training.step import check_forward_output, skip_nonfinite, step_inputs
from futurelat.utils.precision import autocast

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from futurelat.training.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass
class GANState:
    """A trainer's GAN: settings, modules on the device, the discriminator's optimizer, schedule and
    GradScaler, and ``model``, the critic as trained (DDP-wrapped under torchrun; set by :func:`wrap_critic`)."""

    config: GANConfig
    critic: Critic | None
    perceptual: PerceptualLoss | None
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    last_layer: Tensor | None
    model: nn.Module | None = None

    def adversarial(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) trains the discriminator and adds ``g_adv``."""
        return self.critic is not None and step >= self.config.start_step


def setup_gan(trainer: Trainer, gan: GAN) -> GANState:
    """Check that ``trainer.module`` can be a generator and build the discriminator's optimizer.

    Raises:
        ValueError: the module has no pixel decoder, its ``forward`` takes no ``return_reconstruction``,
            or the discriminator's warmup is longer than its ``max_steps - start_step`` steps.
        NotImplementedError: ``adaptive_weight`` on a backbone without ``last_decoder_layer``.
    """
    module, cfg, name = trainer.module, gan.config, trainer.name
    if not getattr(module, "has_decoder", True):
        raise ValueError(f"stage '{name}': backbone.gan needs a backbone with a pixel decoder; "
                         f"{type(module).__name__} has none")
    params = inspect.signature(module.forward).parameters
    if "return_reconstruction" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        raise ValueError(f"stage '{name}': backbone.gan needs {type(module).__name__}.forward(frames, "
                         "return_reconstruction=True) returning 'reconstruction' (futurelat.models.base.Backbone)")
    last_layer = module.last_decoder_layer() if gan.critic is not None and cfg.adaptive_weight else None
    optimizer = scheduler = scaler = None
    critic = gan.critic.to(trainer.device) if gan.critic is not None else None
    if critic is not None:
        o, steps = cfg.optimizer, trainer.schedule.max_steps - cfg.start_step
        if steps <= 0:
            if trainer.dist.is_main:
                log.warning("stage '%s': backbone.gan.start_step=%d >= max_steps=%d: the discriminator never "
                            "trains", name, cfg.start_step, trainer.schedule.max_steps)
            steps = 1
        if o.warmup_steps > steps:
            raise ValueError(f"stage '{name}': backbone.gan.optimizer.warmup_steps={o.warmup_steps} is longer than "
                             f"the discriminator's {steps} steps (max_steps - start_step)")
        optimizer = build_optimizer(critic, o.lr, o.weight_decay, o.betas)
        scheduler = build_scheduler(optimizer, max_steps=steps, warmup_steps=o.warmup_steps,
                                    min_lr_ratio=o.min_lr_ratio)
        scaler = torch.amp.GradScaler("cuda") if trainer.scaler is not None else None
        if cfg.adaptive_weight and cfg.start_step == 0 and trainer.dist.is_main:
            log.warning("stage '%s': backbone.gan.adaptive_weight=true with start_step=0: a step-0 discriminator "
                        "with an adaptive weight is the reported collapse; start it after the autoencoder "
                        "has converged", name)
    perceptual = gan.perceptual.to(trainer.device) if gan.perceptual is not None else None
    return GANState(cfg, critic, perceptual, optimizer, scheduler, scaler, last_layer)


def wrap_critic(trainer: Trainer) -> None:
    """Set ``trainer.gan.model``: the critic, in DistributedDataParallel under torchrun."""
    gan = trainer.gan
    if gan.critic is None:
        return
    gan.critic.train()
    gan.model = gan.critic
    if trainer.dist.distributed:
        device = trainer.device
        gan.model = DistributedDataParallel(gan.critic, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=trainer.settings.find_unused_parameters)


def gan_state_dict(gan: GANState) -> dict[str, Any]:
    """The checkpoint's ``"gan"`` entry: the critic's state (discriminator, LeCam EMAs), the discriminator's
    optimizer, scheduler and GradScaler (``None`` where there is no discriminator)."""
    return {
        "critic": gan.critic.state_dict() if gan.critic is not None else None,
        "optimizer": gan.optimizer.state_dict() if gan.optimizer is not None else None,
        "scheduler": gan.scheduler.state_dict() if gan.scheduler is not None else None,
        "scaler": gan.scaler.state_dict() if gan.scaler is not None else None,
    }


def load_gan_state(gan: GANState, state: Mapping[str, Any] | None, where: str) -> None:
    """Inverse of :func:`gan_state_dict`. A checkpoint without a discriminator (written with the GAN off)
    leaves it freshly initialised, with a warning naming ``where``."""
    if gan.critic is None:
        return
    if state is None or state.get("critic") is None:
        log.warning("%s holds no discriminator (written with backbone.gan.enabled=false): it starts fresh", where)
        return
    gan.critic.load_state_dict(state["critic"])
    gan.optimizer.load_state_dict(state["optimizer"])
    gan.scheduler.load_state_dict(state["scheduler"])
    if gan.scaler is not None and state.get("scaler") is not None:
        gan.scaler.load_state_dict(state["scaler"])


def _backward(loss: Tensor, scaler: torch.amp.GradScaler | None) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _clip(params: list[Tensor], optimizer: torch.optim.Optimizer, scaler: Any, clip: float | None) -> Tensor:
    if scaler is not None:
        scaler.unscale_(optimizer)
    return torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf)


def _update(optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any) -> None:
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()


def _generator_terms(trainer: Trainer, loss: Tensor, recon: Tensor, real: Tensor,
                     adversarial: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """The generator's objective for one micro-batch and its logged parts (detached)."""
    gan, cfg = trainer.gan, trainer.gan.config
    nll, parts = loss, {}
    if gan.perceptual is not None:
        perceptual = gan.perceptual(recon, real)
        nll = nll + cfg.perceptual_weight * perceptual
        parts["perceptual"] = perceptual.detach().float()
    if not adversarial:
        return nll, parts
    g_adv = generator_loss(cfg.g_loss, gan.critic(recon).float())
    weight = torch.tensor(cfg.generator_weight, device=loss.device)
    if cfg.adaptive_weight:
        norms = torch.stack([grad_norm_at(nll, gan.last_layer), grad_norm_at(g_adv, gan.last_layer)])
        all_reduce_mean(norms, trainer.dist)  # one weight on every rank
        weight = weight * adaptive_weight(norms[0], norms[1], cfg.adaptive_weight_max)
    parts.update(g_adv=g_adv.detach(), gan_weight=weight.detach().float())
    return nll + weight * g_adv, parts


def gan_train_step(trainer: Trainer, model: nn.Module, batches: Iterator[Any], keys: list[str] | None,
                   stop: StopSignals | None = None) -> tuple[dict[str, float] | None, list[str], bool]:
    """One GAN optimizer step (the module docstring); returns what
    :func:`~futurelat.training.step.train_step` returns (``keys``: the backbone's own scalar keys)."""
    gan, s = trainer.gan, trainer.settings
    accum, adversarial = s.grad_accum_steps, gan.adversarial(trainer.step)
    ddp = isinstance(model, DistributedDataParallel)
    if gan.critic is not None:
        gan.critic.requires_grad_(False)  # the generator pass: gradients reach the reconstruction only
    trainer.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, Tensor] = {}
    pairs: list[tuple[Tensor, Tensor]] = []
    for micro in range(accum):
        inputs = step_inputs(trainer, next(batches))
        with model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext():
            with autocast(trainer.device, s.precision):
                out = model(**inputs, return_reconstruction=True)
                loss, scalars = check_forward_output(out, trainer.name, type(trainer.module).__name__, trainer.device)
                if "reconstruction" not in out:
                    raise KeyError(f"stage '{trainer.name}': {type(trainer.module).__name__}.forward(frames, "
                                   "return_reconstruction=True) returned no 'reconstruction'")
                real, recon = inputs["frames"], out["reconstruction"]
                total, parts = _generator_terms(trainer, loss, recon, real, adversarial)
            _backward(total.float() / accum, trainer.scaler)
        keys = keys or sorted(scalars)
        if sorted(scalars) != keys:
            raise KeyError(f"stage '{trainer.name}': forward returned keys {sorted(scalars)} "
                           f"but earlier steps returned {keys}")
        scalars["ae_loss"], scalars["loss"] = scalars["loss"], total.detach().float().reshape(())
        for k, v in {**scalars, **parts}.items():
            sums[k] = sums[k] + v if k in sums else v
        if adversarial:
            pairs.append((real.detach(), recon.detach()))

    grad_norm = _clip(trainer.params, trainer.optimizer, trainer.scaler, s.grad_clip)
    names = sorted(sums)
    stop_flag = torch.tensor(float(stop is not None and stop.requested), device=grad_norm.device)
    vec = all_reduce_mean(torch.stack([sums[k] / accum for k in names] + [grad_norm.float().reshape(()), stop_flag]),
                          trainer.dist)
    values = dict(zip(names, vec.tolist()))
    values["grad_norm"], stopping = float(vec[-2]), bool(vec[-1] > 0)
    d_update = [(gan.optimizer, gan.scheduler)] if adversarial else []
    problem = _nonfinite(trainer, "loss", values["loss"], "gradient norm", values["grad_norm"], trainer.scaler)
    if problem is not None:
        skip_nonfinite(trainer, problem, [(trainer.optimizer, trainer.scheduler)] + d_update)
        return None, keys, stopping
    values["lr"] = float(trainer.optimizer.param_groups[0]["lr"])
    _update(trainer.optimizer, trainer.scheduler, trainer.scaler)
    if adversarial:
        d_values = _discriminator_pass(trainer, pairs)
        problem = _nonfinite(trainer, "discriminator loss", d_values["d_loss"], "discriminator gradient norm",
                             d_values["d_grad_norm"], gan.scaler)
        if problem is not None:  # the generator's update stands; the discriminator's is skipped
            skip_nonfinite(trainer, problem, d_update)
            return None, keys, stopping
        d_values["d_lr"] = float(gan.optimizer.param_groups[0]["lr"])
        _update(gan.optimizer, gan.scheduler, gan.scaler)
        gan.critic.lecam.update(d_values["logits_real"], d_values["logits_fake"])  # rank means: equal on all ranks
        values.update(d_values)
    trainer.bad_steps = 0
    return values, keys, stopping


def _discriminator_pass(trainer: Trainer, pairs: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Forward/backward of the critic on the (real, detached reconstruction) pairs of the step's
    micro-batches, then clipping; returns the rank-mean values (the caller makes the update)."""
    gan, s = trainer.gan, trainer.settings
    cfg, accum = gan.config, len(pairs)
    ddp = isinstance(gan.model, DistributedDataParallel)
    gan.critic.requires_grad_(True)
    gan.optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(4, device=trainer.device)
    for micro, (real, fake) in enumerate(pairs):
        with gan.model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext():
            with autocast(trainer.device, s.precision):
                logits = gan.model(torch.cat([real, fake])).float()  # one pass: (2B, ...)
            logits_real, logits_fake = logits[: real.shape[0]], logits[real.shape[0]:]
            d_loss = discriminator_loss(cfg.d_loss, logits_real, logits_fake)
            lecam = gan.critic.lecam.penalty(logits_real, logits_fake)
            _backward((d_loss + cfg.lecam_weight * lecam) / accum, gan.scaler)
        sums += torch.stack([d_loss, lecam, logits_real.mean(), logits_fake.mean()]).detach()
    d_grad_norm = _clip(list(gan.critic.parameters()), gan.optimizer, gan.scaler, s.grad_clip)
    vec = all_reduce_mean(torch.cat([sums / accum, d_grad_norm.float().reshape(1)]), trainer.dist).tolist()
    return dict(zip(("d_loss", "lecam", "logits_real", "logits_fake", "d_grad_norm"), vec))


def _nonfinite(trainer: Trainer, loss_name: str, loss: float, norm_name: str, norm: float,
               scaler: Any) -> str | None:
    """The problem of a step whose loss (or, without a GradScaler, gradient norm) is not finite, or ``None``."""
    where = f"in stage '{trainer.name}' at step {trainer.step + 1}"
    if not math.isfinite(loss):
        return f"non-finite {loss_name} {where} ({loss}; rank {trainer.dist.rank})"
    if scaler is None and not math.isfinite(norm):  # (fp16: the GradScaler skips such steps itself)
        return f"non-finite {norm_name} {where} (finite loss {loss}; rank {trainer.dist.rank})"
    return None
