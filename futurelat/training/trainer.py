"""futurelat's one trainer: tokenizer training (stage 1) and predictor training on a frozen
backbone (stage 2) both run through :class:`Trainer`.

One optimizer step = ``grad_accum_steps`` micro-batches of ``batch_size`` samples on each
of ``world_size`` ranks, so ``batch_size * grad_accum_steps * world_size`` samples per step.
Under ``torchrun`` the module is wrapped in ``DistributedDataParallel`` (gradients are
all-reduced on the last micro-step; the others run under ``no_sync()``).

Settings (``cfg``, usually ``configs/trainer/default.yaml``; missing keys take these defaults):

=========================  =========  =====================================================
key                        default    meaning
=========================  =========  =====================================================
``device``                 auto       ``auto`` | ``cpu`` | ``cuda``; must agree with the
                                      process group's device when ``dist`` is given
``precision``              fp32       ``fp32`` | ``bf16`` (autocast) | ``fp16`` (CUDA only,
                                      autocast + ``torch.amp.GradScaler``)
``grad_clip``              1.0        max global gradient L2 norm; ``null`` = no clipping
``weight_decay``           0.05       AdamW decoupled weight decay (2-d+ parameters only)
``betas``                  [0.9,0.95] AdamW betas
``log_every``              25         optimizer steps between logged metrics
``ckpt_every``             250        optimizer steps between ``{name}_last.pt`` saves
                                      (``null``/0: only at the end and on a stop signal)
``resume``                 auto       ``auto``: continue from ``checkpoints/{name}_last.pt``
                                      when it exists, else start fresh; ``true``: continue
                                      (an error when there is none); ``false``: start fresh
``stop_signals``           TERM,USR1, signals that end training after the current step,
                           USR2       which is saved to ``{name}_last.pt``
                                      (:mod:`futurelat.training.preemption`)
``skip_nonfinite``         0          consecutive steps with a non-finite loss or gradient
                                      norm to skip (no update, logged) before stopping
``num_workers``            0          DataLoader worker processes per rank
``seed``                   0          data order and RNG seed (rank ``r`` uses ``seed + r``)
``grad_accum_steps``       1          micro-batches per optimizer step
``progress``               true       rich progress bar on rank 0
``find_unused_parameters`` false      passed to ``DistributedDataParallel``
``cpu_malloc``             system     ``system`` | ``reuse``: on CPU, keep freed memory for
                                      the next step instead of page-faulting it in again
                                      (:mod:`futurelat.utils.cpu_memory`)
``gradient_checkpointing`` false      recompute each trunk block's activations in backward
                                      (less memory, ~1 more forward per step); a stage
                                      whose module has no checkpointable blocks (the
                                      VQ-VAE tokenizer) logs a warning and trains without
                                      (:mod:`futurelat.models.heads.checkpointing`)
=========================  =========  =====================================================

Stage schedule (``stage_cfg``, all required): ``max_steps`` (optimizer steps), ``batch_size``
(samples per rank per micro-step), ``lr`` (peak), ``warmup_steps``, ``min_lr_ratio``
(cosine decays to ``lr * min_lr_ratio``); see :mod:`futurelat.training.optim`.

Outputs in ``run_dir``: ``checkpoints/{name}_last.pt`` (every ``ckpt_every`` steps and at the
end), ``checkpoints/{name}_final.pt`` (at the end; format in
:mod:`futurelat.training.checkpoint`) and ``train_log.jsonl`` (one JSON object per log step).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from futurelat.config.trainer import StageSchedule, TrainerSettings
from futurelat.models.heads.checkpointing import set_gradient_checkpointing
from futurelat.training.checkpoint import (FORMAT_VERSION, capture_rng_state, checkpoint_path,
                                           load_checkpoint, restore_rng_state, save_checkpoint,
                                           state_digest)
from futurelat.training.distributed import (DistInfo, all_gather_objects, all_reduce_mean,
                                            barrier, init_distributed, resolve_device)
from futurelat.training.optim import build_optimizer, build_scheduler
from futurelat.training.preemption import (StopSignals, TrainingInterrupted,
                                           ignore_signals, parse_signals)
from futurelat.training.sampler import StepBatchSampler
from futurelat.utils.cpu_memory import configure_cpu_malloc

log = logging.getLogger(__name__)

_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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

    Raises:
        KeyError / ValueError: bad ``cfg`` / ``stage_cfg`` (see the ``from_cfg`` methods).
        ValueError: ``precision: fp16`` off CUDA; an empty dataset; no trainable parameter.
    """

    def __init__(self, module: nn.Module, dataset: Dataset, cfg: Mapping | DictConfig,
                 stage_cfg: Mapping | DictConfig, run_dir: str | Path, name: str = "tokenizer",
                 prepare: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
                 logger: Any | None = None, config_to_save: Mapping | DictConfig | None = None,
                 dist: DistInfo | None = None):
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
        self._amp_dtype = _PRECISIONS[precision]
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
        self.config_yaml = _config_yaml(config_to_save)

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
        resumed_rng = self._resume() if s.resume else None
        if self.step >= sched.max_steps:
            log.info("stage '%s': checkpoint already at step %d/%d; skipping training",
                     self.name, self.step, sched.max_steps)
            barrier(self.dist)
            return self.module
        if resumed_rng is None:
            _seed_everything(s.seed + self.dist.rank)

        model: nn.Module = self.module
        if self.dist.distributed:
            model = DistributedDataParallel(
                self.module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=s.find_unused_parameters)
        batches = iter(self._loader(start_micro=self.step * s.grad_accum_steps))
        if resumed_rng is not None:
            restore_rng_state(resumed_rng)
        self.module.train()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

        keys: list[str] | None = None
        self.started = time.perf_counter()
        window = _Window()
        progress = _progress(self.name, enabled=self.dist.is_main and s.progress)
        with progress, StopSignals(self.stop_signals) as stop:
            task = progress.add_task(self.name, total=sched.max_steps, completed=self.step,
                                     loss=float("nan"), lr=0.0, sps=0.0)
            window.reset()
            stopping = False
            while self.step < sched.max_steps and not stopping:
                values, keys, stopping = self._train_step(model, batches, keys, stop)
                self.step += 1
                if values is not None:
                    window.add(values, self.samples_per_step)
                    progress.update(task, completed=self.step, loss=values["loss"],
                                    lr=values["lr"], sps=window.samples_per_s())
                if (self.step % s.log_every == 0 or self.step == sched.max_steps or stopping) and window.count:
                    self._log(window.mean(), window.samples_per_s())
                    window.reset()
                if self.step != sched.max_steps and (stopping or (s.ckpt_every and self.step % s.ckpt_every == 0)):
                    self._save(("last",))  # (at max_steps the final save below writes last.pt too)
            if self.step == sched.max_steps:
                self._save(("final", "last"))  # final first: a last.pt at max_steps implies final.pt
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

    # ----------------------------------------------------------------- one step

    def _train_step(self, model: nn.Module, batches, keys: list[str] | None, stop: StopSignals | None = None
                    ) -> tuple[dict[str, float] | None, list[str], bool]:
        """Forward/backward over ``grad_accum_steps`` micro-batches, clip, optimizer step.

        Returns the step's rank-mean scalars (micro-batch mean) plus ``lr`` (used by this
        step) and ``grad_norm`` (pre-clipping global L2 norm), or ``None`` for a step skipped
        as non-finite (``skip_nonfinite``); the scalar keys; and whether a stop signal reached any
        rank by the end of the backward pass (shared through the step's one all-reduce).
        """
        accum = self.settings.grad_accum_steps
        ddp = isinstance(model, DistributedDataParallel)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, Tensor] = {}
        for micro in range(accum):
            inputs = self._inputs(next(batches))
            sync = model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    out = model(**inputs)
                loss, scalars = self._check_output(out)
                scaled = loss.float() / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            if keys is None:
                keys = sorted(scalars)
            if sorted(scalars) != keys:
                raise KeyError(f"stage '{self.name}': forward returned keys {sorted(scalars)} "
                               f"but earlier steps returned {keys}")
            for k in keys:
                sums[k] = sums[k] + scalars[k] if k in sums else scalars[k]

        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.settings.grad_clip if self.settings.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)

        stop_flag = torch.tensor(float(stop is not None and stop.requested), device=grad_norm.device)
        vec = torch.stack([sums[k] / accum for k in keys] + [grad_norm.float().reshape(()), stop_flag])
        local = vec.clone()
        all_reduce_mean(vec, self.dist)  # one collective per step: logged values are rank means
        reduced = vec.tolist()
        values = dict(zip(keys, reduced[:-2]))
        values["grad_norm"] = reduced[-2]
        stopping = reduced[-1] > 0
        problem = None
        if not math.isfinite(values["loss"]):
            mine = dict(zip(keys, local.tolist()[:-2]))
            problem = (f"non-finite loss in stage '{self.name}' at step {self.step + 1} "
                       f"(rank-mean loss {values['loss']}; rank {self.dist.rank} returned {mine})")
        elif self.scaler is None and not math.isfinite(values["grad_norm"]):
            # (with fp16 the GradScaler skips such steps and lowers its scale instead)
            problem = (f"non-finite gradient norm in stage '{self.name}' at step {self.step + 1} "
                       f"(finite loss {values['loss']}; rank {self.dist.rank})")
        if problem is not None:
            self._skip_nonfinite(problem)
            return None, keys, stopping
        self.bad_steps = 0
        values["lr"] = float(self.optimizer.param_groups[0]["lr"])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return values, keys, stopping

    def _skip_nonfinite(self, problem: str) -> None:
        """A step with a non-finite loss or gradient norm: skip it (no update; the schedule moves on)
        while fewer than ``skip_nonfinite`` in a row were skipped, else raise FloatingPointError."""
        self.bad_steps += 1
        limit = self.settings.skip_nonfinite
        if self.bad_steps > limit:
            hint = (f"{self.bad_steps} in a row, trainer.skip_nonfinite={limit}" if limit
                    else "set trainer.skip_nonfinite=N to skip up to N such steps in a row")
            raise FloatingPointError(f"{problem}; stopping ({hint}). The last checkpoint is untouched.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.skipped_steps += 1
        if self.dist.is_main:
            log.warning("%s: skipped (%d of at most %d in a row; %d skipped in this stage)", problem,
                        self.bad_steps, limit, self.skipped_steps)
            if self.logger is not None:
                self.logger.log_metrics({f"{self.name}/skipped_steps": float(self.skipped_steps)},
                                        step=self.step + 1)

    def _inputs(self, batch: Any) -> Mapping[str, Any]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"stage '{self.name}': dataset items must be dicts "
                            f"(e.g. {{'frames': (T, C, H, W)}}); got a batch of {type(batch)}")
        batch = _to_device(batch, self.device)
        if self.prepare is None:
            return batch
        with torch.no_grad(), self._autocast():
            inputs = self.prepare(batch)
        if not isinstance(inputs, Mapping):
            raise TypeError(f"stage '{self.name}': prepare must return a dict of forward "
                            f"kwargs; got {type(inputs)}")
        return inputs

    def _check_output(self, out: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if not isinstance(out, Mapping):
            raise TypeError(f"stage '{self.name}': {type(self.module).__name__}.forward must "
                            f"return a dict with a 'loss' entry; got {type(out)}")
        if "loss" not in out:
            raise KeyError(f"stage '{self.name}': {type(self.module).__name__}.forward returned "
                           f"keys {sorted(out)} without 'loss'")
        loss = out["loss"]
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise TypeError(f"stage '{self.name}': 'loss' must be a scalar tensor; got "
                            f"{type(loss).__name__} {getattr(loss, 'shape', '')}")
        if not loss.requires_grad:
            raise RuntimeError(f"stage '{self.name}': 'loss' does not require grad (are all "
                               f"parameters frozen, or was it computed under no_grad?)")
        scalars: dict[str, Tensor] = {}
        for k, v in out.items():
            if isinstance(v, Tensor) and v.numel() == 1:
                scalars[k] = v.detach().float().reshape(())
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                scalars[k] = torch.tensor(float(v), device=self.device)
        return loss.reshape(()), scalars

    def _autocast(self):
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._amp_dtype)

    # ------------------------------------------------------------ data / io

    def _loader(self, start_micro: int) -> DataLoader:
        s, sched = self.settings, self.schedule
        sampler = StepBatchSampler(
            len(self.dataset), sched.batch_size, seed=s.seed, start=start_micro,
            stop=sched.max_steps * s.grad_accum_steps, rank=self.dist.rank,
            world_size=self.dist.world_size)
        # A private generator: creating the iterator must not draw from the global torch RNG
        # (that would make a resumed run's RNG stream differ from an uninterrupted one).
        seed = int(np.random.SeedSequence([s.seed, start_micro, self.dist.rank])
                   .generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=s.num_workers,
                          pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(seed),
                          # workers outlive a stop signal sent to the whole job step (SLURM)
                          worker_init_fn=functools.partial(ignore_signals, self.stop_signals))

    def _resume(self) -> dict[str, Any] | None:
        """Load ``{name}_last.pt`` if present; returns this rank's RNG state to restore.

        Raises:
            FileNotFoundError: ``resume: true`` and no ``{name}_last.pt`` (``auto`` starts fresh).
        """
        path = self.checkpoint_path("last")
        if not path.is_file():
            if self.settings.resume is True:
                raise FileNotFoundError(f"stage '{self.name}': trainer.resume=true but there is no {path} to "
                                        "resume from; use trainer.resume=auto to start fresh when there is none")
            if self.dist.is_main:
                log.info("stage '%s': no %s yet; starting fresh", self.name, path)
            return None
        ckpt = load_checkpoint(path, map_location=self.device)
        step = int(ckpt["step"])
        if step > self.schedule.max_steps:
            raise ValueError(f"stage '{self.name}': {path} is at step {step} > max_steps="
                             f"{self.schedule.max_steps}")
        self.module.load_state_dict(ckpt["model"])
        self.step = step
        if step >= self.schedule.max_steps:
            return None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        if len(rng) != self.dist.world_size:
            if self.dist.is_main:
                log.warning("stage '%s': %s was written by %d ranks, now %d; RNG streams will "
                            "differ from an uninterrupted run", self.name, path, len(rng),
                            self.dist.world_size)
        if self.dist.is_main:
            log.info("stage '%s': resumed from %s at step %d", self.name, path, step)
        return rng[self.dist.rank % len(rng)]

    def _save(self, kinds: tuple[str, ...]) -> None:
        """Write ``{name}_{kind}.pt`` for each kind (collective: every rank calls it). A ``final``
        save under DDP also gathers each rank's weight digest and refuses diverged ranks."""
        rng = all_gather_objects(capture_rng_state(), self.dist)  # collective: all ranks
        digests = all_gather_objects(state_digest(self.module), self.dist) if "final" in kinds else None
        if digests is not None and len(set(digests)) > 1:
            raise RuntimeError(f"stage '{self.name}': the ranks' weights differ at step {self.step} "
                               f"(digests {digests}); gradients were not synchronised")
        if self.dist.is_main:
            state = {
                "format": FORMAT_VERSION,
                "name": self.name,
                "step": self.step,
                "world_size": self.dist.world_size,
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rng,
                "config_yaml": self.config_yaml,
                "rank_digests": digests,
            }
            for kind in kinds:
                save_checkpoint(state, self.checkpoint_path(kind))

    def _log(self, means: dict[str, float], samples_per_s: float) -> None:
        if not self.dist.is_main:
            return
        metrics = {f"{self.name}/{k}": v for k, v in means.items() if k != "lr"}
        metrics[f"{self.name}/lr"] = means["lr"]
        metrics[f"{self.name}/samples_per_s"] = samples_per_s
        metrics[f"{self.name}/elapsed_s"] = time.perf_counter() - self.started  # wall time of this process's fit()
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=self.step)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"stage": self.name, "step": self.step, **metrics}) + "\n")
        log.info("%s step %d/%d loss %.4g lr %.3g %.1f samples/s", self.name, self.step,
                 self.schedule.max_steps, means["loss"], means["lr"], samples_per_s)


class _Window:
    """Running means of step values and throughput since the last log."""

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.samples = 0
        self.t0 = time.perf_counter()

    def add(self, values: Mapping[str, float], samples: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.samples += samples
        self.last_lr = values["lr"]

    def mean(self) -> dict[str, float]:
        out = {k: v / max(1, self.count) for k, v in self.sums.items()}
        out["lr"] = self.last_lr  # the lr of the latest step, not a window mean
        return out

    def samples_per_s(self) -> float:
        return self.samples / max(1e-9, time.perf_counter() - self.t0)


def _progress(name: str, enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}  lr {task.fields[lr]:.2e}  "
                   "{task.fields[sps]:.1f} samples/s"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _config_yaml(config: Mapping | DictConfig | None) -> str | None:
    if config is None:
        return None
    if not isinstance(config, DictConfig):
        config = OmegaConf.create(dict(config))
    return OmegaConf.to_yaml(config, resolve=True)
