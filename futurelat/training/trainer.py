"""futurelat's one trainer: backbone training (stage 1) and head training on a frozen
backbone (stage 2) both run through :class:`Trainer`.

One optimizer step = ``grad_accum_steps`` micro-batches of ``batch_size`` samples on each
of ``world_size`` ranks, so ``batch_size * grad_accum_steps * world_size`` samples per step.
Under ``torchrun`` the module is wrapped in ``DistributedDataParallel`` (gradients are
all-reduced on the last micro-step; the others run under ``no_sync()``).

Settings: ``cfg`` (usually ``configs/trainer/default.yaml``) is read as
:class:`futurelat.config.trainer.TrainerSettings` and each stage's ``stage_cfg`` as
:class:`futurelat.config.trainer.StageSchedule`; their docstrings list every key, its default
(missing keys take it; a stage schedule has none, every key is required) and its range. How the
trainer applies some of them:

- ``precision``: ``bf16`` and ``fp16`` run the forward pass under autocast; ``fp16`` (CUDA only)
  adds a ``torch.amp.GradScaler``.
- ``resume``: ``true`` is an error when there is no ``checkpoints/{name}_last.pt``.
- ``stop_signals``: the step during which a signal arrives is finished and saved to
  ``{name}_last.pt`` (:mod:`futurelat.training.preemption`).
- ``skip_nonfinite``: up to that many steps in a row with a non-finite loss or gradient norm
  make no update (the schedule moves on) and are logged; the next one raises ``FloatingPointError``.
- ``gradient_checkpointing``: a stage whose module has no checkpointable blocks (the VQ-VAE
  tokenizer) logs a warning and trains without (:mod:`futurelat.models.heads.checkpointing`).
- the schedule: linear warmup, then cosine decay to ``lr * min_lr_ratio``
  (:mod:`futurelat.training.optim`).
- ``compile``: a head's trunk trains through ``torch.compile`` (:mod:`futurelat.training.compile`);
  a stage without one (the tokenizer) trains as it is.
- ``ema``: the stages it names keep an exponential moving average of their weights, updated after
  every optimizer update that was made, saved and resumed with the rest (:mod:`futurelat.training.ema`);
  ``Trainer.ema`` holds it, and :meth:`Trainer.fit` returns the trained (raw) weights.

Outputs in ``run_dir``: ``checkpoints/{name}_last.pt`` (every ``ckpt_every`` steps and at the
end), ``checkpoints/{name}_final.pt`` (at the end; format in
:mod:`futurelat.training.checkpoint`) and ``train_log.jsonl`` (one JSON object per log step).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from futurelat.config.trainer import StageSchedule, TrainerSettings
from futurelat.models.heads.checkpointing import set_gradient_checkpointing
from futurelat.training.checkpoint import checkpoint_path, restore_rng_state
from futurelat.training.compile import compiled_trunks
from futurelat.training.distributed import DistInfo, barrier, init_distributed, resolve_device
from futurelat.training.ema import EMA
from futurelat.training.gan_step import gan_train_step, setup_gan, wrap_critic
from futurelat.training.loader import build_loader
from futurelat.training.optim import build_optimizer, build_scheduler
from futurelat.training.preemption import StopSignals, TrainingInterrupted, parse_signals
from futurelat.training.stage_checkpoints import config_yaml, resume_stage, save_stage
from futurelat.training.step import StepWindow, log_step, train_step
from futurelat.utils.cpu_memory import configure_cpu_malloc
from futurelat.utils.progress import progress_bar
from futurelat.utils.seeding import seed_everything

if TYPE_CHECKING:
    from futurelat.models.gan.build import GAN

log = logging.getLogger(__name__)

_PROGRESS_FIELDS = "loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.2e}  {task.fields[sps]:.1f} samples/s"


class Trainer:
    """Trains ``module`` on ``dataset`` for ``stage_cfg.max_steps`` AdamW steps.

    Args:
        module: ``nn.Module`` whose ``forward(**inputs)`` returns ``dict[str, Tensor]`` with a
            scalar ``"loss"`` (optimized) and optionally other scalars (logged; non-scalar
            entries are ignored). Every rank must return the same keys. Moved to the device.
        dataset: map-style dataset whose items are dicts of tensors, e.g.
            ``{"frames": (T, C, H, W)}``; batches are collated to ``{"frames": (B, T, C, H, W)}``
            and moved to the device.
        cfg: generic :class:`TrainerSettings`.
        stage_cfg: the stage's :class:`StageSchedule`.
        run_dir: output directory (checkpoints, ``train_log.jsonl``).
        name: stage name: log-key prefix (``"{name}/loss"``) and checkpoint name.
        prepare: optional ``callable(batch: dict) -> dict`` of ``forward`` kwargs, run under
            ``torch.no_grad()`` (and the precision's autocast) OUTSIDE the DDP wrapper, e.g.
            ``lambda b: {"z": frozen_backbone.encode(b["frames"])}``. Whatever modules it
            uses must already be on ``trainer.device``.
        logger: object with ``log_metrics(metrics: dict[str, float], step: int)``; rank 0 only.
        config_to_save: resolved config (dict or DictConfig) stored in checkpoints as YAML.
        dist: :class:`DistInfo`; default :func:`init_distributed` (``cfg.device``).
        gan: ``backbone.gan`` built (:func:`futurelat.models.gan.build.build_gan`): train ``module`` as the
            generator of a GAN, with a second optimizer for the discriminator
            (:mod:`futurelat.training.gan_step`); ``None`` (the default): the plain step.

    Raises:
        KeyError / ValueError: bad ``cfg`` / ``stage_cfg`` (see the ``from_cfg`` methods).
        ValueError: ``precision: fp16`` off CUDA; an empty dataset; no trainable parameter.
    """

    def __init__(self, module: nn.Module, dataset: Dataset, cfg: Mapping | DictConfig,
                 stage_cfg: Mapping | DictConfig, run_dir: str | Path, name: str = "backbone",
                 prepare: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
                 logger: Any | None = None, config_to_save: Mapping | DictConfig | None = None,
                 dist: DistInfo | None = None, gan: GAN | None = None):
        self.name = name
        self.settings = TrainerSettings.from_cfg(cfg)
        self.schedule = StageSchedule.from_cfg(stage_cfg, name)
        self.dist = dist if dist is not None else init_distributed(self.settings.device)
        self.device = self.dist.device  # one device per process: the one the process group was set up for
        if self.settings.device != "auto":
            wanted = resolve_device(self.settings.device, self.dist.local_rank)
            if wanted != self.device:
                raise ValueError(f"stage '{name}': trainer.device={self.settings.device} ({wanted}) but this "
                                 f"process was set up for {self.device} (init_distributed); pass the same "
                                 "device to both")
        precision = self.settings.precision
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError(f"stage '{name}': trainer.precision=fp16 needs CUDA (it uses "
                             f"torch.amp.GradScaler); device is {self.device}. Use bf16 or fp32.")
        if self.device.type == "cpu":
            configure_cpu_malloc(self.settings.cpu_malloc)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

        try:
            num_samples = len(dataset)  # type: ignore[arg-type]
        except TypeError as err:
            raise TypeError(f"stage '{name}': dataset must be map-style (have __len__)") from err
        if num_samples <= 0:
            raise ValueError(f"stage '{name}': dataset is empty")
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.prepare = prepare
        self.logger = logger
        self.config_yaml = config_yaml(config_to_save)

        self.module = module.to(self.device)
        if self.settings.gradient_checkpointing:
            _enable_gradient_checkpointing(self.module, name, self.dist.is_main)
        self.stop_signals = parse_signals(self.settings.stop_signals)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.module, self.schedule.lr,
                                         self.settings.weight_decay, self.settings.betas)
        self.scheduler = build_scheduler(self.optimizer, max_steps=self.schedule.max_steps,
                                         warmup_steps=self.schedule.warmup_steps,
                                         min_lr_ratio=self.schedule.min_lr_ratio)
        #: the GAN (discriminator, its optimizer, the perceptual loss), or None
        self.gan = setup_gan(self, gan) if gan is not None else None
        ema = self.settings.ema
        #: the EMA of the module's weights (``trainer.ema``), or None
        self.ema = EMA(self.module, ema.decay, ema.warmup) if ema.decay is not None and name in ema.stages else None
        #: completed optimizer steps
        self.step = 0
        #: non-finite steps skipped in a row / in all (``skip_nonfinite``)
        self.bad_steps = 0
        self.skipped_steps = 0
        self.log_path = self.run_dir / "train_log.jsonl"

    # ------------------------------------------------------------------ public

    @property
    def samples_per_step(self) -> int:
        """Samples consumed by one optimizer step over all ranks."""
        return self.schedule.batch_size * self.settings.grad_accum_steps * self.dist.world_size

    def checkpoint_path(self, kind: str = "last") -> Path:
        """``run_dir/checkpoints/{name}_{kind}.pt``."""
        return checkpoint_path(self.run_dir, self.name, kind)

    def fit(self) -> nn.Module:
        """Train until ``stage_cfg.max_steps`` optimizer steps; return the unwrapped module.

        With ``resume`` (``auto`` / ``true``) and an existing ``{name}_last.pt``, model/optimizer/
        scheduler/scaler/RNG states and the step are restored and training continues (bit-identical
        to an uninterrupted run for the same world size); if it is already at ``max_steps``
        training is skipped. Under DDP the ranks' final weights are compared (a digest each, kept in
        the checkpoints as ``rank_digests``).

        Raises:
            FloatingPointError: the rank-mean loss of a step is NaN/inf (message names the
                stage, step and this rank's returned scalars), or (fp32/bf16) the gradient
                norm is, more than ``skip_nonfinite`` steps in a row; raised on every rank before
                the optimizer step, so no checkpoint holds the bad update.
            TrainingInterrupted: a ``stop_signals`` signal arrived; raised on every rank after the
                step it arrived in was saved to ``{name}_last.pt`` (see
                :mod:`futurelat.training.preemption`).
            KeyError / TypeError: ``forward`` returned no ``"loss"`` / not a dict, or
                ``prepare`` returned no dict.
            FileNotFoundError: ``resume: true`` without a ``{name}_last.pt``.
            ValueError: the resume checkpoint is beyond ``max_steps``.
            RuntimeError: under DDP, the ranks' weights differ at the end.
        """
        s, sched = self.settings, self.schedule
        resumed_rng = resume_stage(self) if s.resume else None
        if self.step >= sched.max_steps:
            log.info("stage '%s': checkpoint already at step %d/%d; skipping training",
                     self.name, self.step, sched.max_steps)
            barrier(self.dist)
            return self.module
        if resumed_rng is None:
            seed_everything(s.seed + self.dist.rank)

        model: nn.Module = self.module
        if self.dist.distributed:
            model = DistributedDataParallel(
                self.module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=s.find_unused_parameters)
        if self.gan is not None:
            wrap_critic(self)
        step_fn = gan_train_step if self.gan is not None else train_step
        batches = iter(build_loader(
            self.dataset, batch_size=sched.batch_size, seed=s.seed, start_micro=self.step * s.grad_accum_steps,
            stop_micro=sched.max_steps * s.grad_accum_steps, num_workers=s.num_workers, dist=self.dist,
            device=self.device, stop_signals=self.stop_signals))
        if resumed_rng is not None:
            restore_rng_state(resumed_rng)
        self.module.train()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

        keys: list[str] | None = None
        self.started = time.perf_counter()
        window = StepWindow()
        progress = progress_bar("train", self.dist.is_main and s.progress, _PROGRESS_FIELDS)
        compiled = compiled_trunks(self.module, s.compile, f"stage '{self.name}'")
        with compiled as num_compiled, progress, StopSignals(self.stop_signals) as stop:
            if num_compiled and self.dist.is_main:
                log.info("stage '%s': trainer.compile: the first step compiles the trunk of %d head(s)",
                         self.name, num_compiled)
            task = progress.add_task(self.name, total=sched.max_steps, completed=self.step,
                                     loss=float("nan"), lr=0.0, sps=0.0)
            window.reset()
            stopping = False
            while self.step < sched.max_steps and not stopping:
                values, keys, stopping = step_fn(self, model, batches, keys, stop)
                self.step += 1
                if values is not None and self.ema is not None:
                    self.ema.update(self.module)
                if values is not None:
                    window.add(values, self.samples_per_step)
                    progress.update(task, completed=self.step, loss=values["loss"],
                                    lr=values["lr"], sps=window.samples_per_s())
                if (self.step % s.log_every == 0 or self.step == sched.max_steps or stopping) and window.count:
                    if self.dist.is_main:
                        log_step(self.name, self.step, sched.max_steps, window.mean(), window.samples_per_s(),
                                 time.perf_counter() - self.started, self.logger, self.log_path)
                    window.reset()
                if self.step != sched.max_steps and (stopping or (s.ckpt_every and self.step % s.ckpt_every == 0)):
                    save_stage(self, ("last",))  # (at max_steps the final save below writes last.pt too)
            if self.step == sched.max_steps:
                save_stage(self, ("final", "last"))  # final first: a last.pt at max_steps implies final.pt
            if stopping:
                self._stop(stop)
        barrier(self.dist)
        return self.module

    def _stop(self, stop: StopSignals) -> None:
        """After a stop signal's step was saved: log it, hand the signal on, raise TrainingInterrupted."""
        signum = stop.signum if stop.signum is not None else signal.SIGTERM  # another rank caught it
        path = self.checkpoint_path("last")
        if self.dist.is_main:
            log.warning("stage '%s': stopped by %s at step %d/%d; saved %s", self.name,
                        signal.Signals(signum).name, self.step, self.schedule.max_steps, path)
            if self.logger is not None:
                self.logger.log_metrics({f"{self.name}/stopped_at_step": float(self.step)}, step=self.step)
        barrier(self.dist)
        stop.forward()  # e.g. submitit's requeue handler, which exits the process itself
        raise TrainingInterrupted(signum, self.name, self.step, path)


def _enable_gradient_checkpointing(module: nn.Module, name: str, log_it: bool) -> None:
    """``trainer.gradient_checkpointing: true``: switch it on in ``module``; a stage without
    checkpointable blocks (one flag covers every stage) gets a warning, not an error."""
    count = set_gradient_checkpointing(module)
    if not log_it:
        return
    if count:
        log.info("stage '%s': gradient checkpointing on %d blocks of %s", name, count, type(module).__name__)
    else:
        log.warning("stage '%s': trainer.gradient_checkpointing=true, but %s has no checkpointable blocks "
                    "(the transformer, flow_dit and mamba heads' trunks have); this stage trains without it",
                    name, type(module).__name__)


