"""One optimizer step of a :class:`~futurelat.training.trainer.Trainer` and what it yields: the checked
output of ``forward``, running means between logs, the log line."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from futurelat.training.distributed import all_reduce_mean
from futurelat.training.loader import to_device
from futurelat.training.preemption import StopSignals
from futurelat.utils.precision import autocast

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from futurelat.training.trainer import Trainer

log = logging.getLogger(__name__)


def train_step(trainer: Trainer, model: nn.Module, batches: Iterator[Any], keys: list[str] | None,
               stop: StopSignals | None = None) -> tuple[dict[str, float] | None, list[str], bool]:
    """Forward/backward over ``grad_accum_steps`` micro-batches, clip, optimizer step.

    Returns the step's rank-mean scalars (micro-batch mean) plus ``lr`` (used by this
    step) and ``grad_norm`` (pre-clipping global L2 norm), or ``None`` for a step skipped
    as non-finite (``skip_nonfinite``); the scalar keys; and whether a stop signal reached any
    rank by the end of the backward pass (shared through the step's one all-reduce).
    """
    accum = trainer.settings.grad_accum_steps
    ddp = isinstance(model, DistributedDataParallel)
    trainer.optimizer.zero_grad(set_to_none=True)
    sums: dict[str, Tensor] = {}
    for micro in range(accum):
        inputs = step_inputs(trainer, next(batches))
        sync = model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext()
        with sync:
            with autocast(trainer.device, trainer.settings.precision):
                out = model(**inputs)
            loss, scalars = check_forward_output(out, trainer.name, type(trainer.module).__name__, trainer.device)
            scaled = loss.float() / accum
            (trainer.scaler.scale(scaled) if trainer.scaler is not None else scaled).backward()
        if keys is None:
            keys = sorted(scalars)
        if sorted(scalars) != keys:
            raise KeyError(f"stage '{trainer.name}': forward returned keys {sorted(scalars)} "
                           f"but earlier steps returned {keys}")
        for k in keys:
            sums[k] = sums[k] + scalars[k] if k in sums else scalars[k]

    if trainer.scaler is not None:
        trainer.scaler.unscale_(trainer.optimizer)
    max_norm = trainer.settings.grad_clip if trainer.settings.grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(trainer.params, max_norm)

    stop_flag = torch.tensor(float(stop is not None and stop.requested), device=grad_norm.device)
    vec = torch.stack([sums[k] / accum for k in keys] + [grad_norm.float().reshape(()), stop_flag])
    local = vec.clone()
    all_reduce_mean(vec, trainer.dist)  # one collective per step: logged values are rank means
    reduced = vec.tolist()
    values = dict(zip(keys, reduced[:-2]))
    values["grad_norm"] = reduced[-2]
    stopping = reduced[-1] > 0
    problem = None
    if not math.isfinite(values["loss"]):
        mine = dict(zip(keys, local.tolist()[:-2]))
        problem = (f"non-finite loss in stage '{trainer.name}' at step {trainer.step + 1} "
                   f"(rank-mean loss {values['loss']}; rank {trainer.dist.rank} returned {mine})")
    elif trainer.scaler is None and not math.isfinite(values["grad_norm"]):
        # (with fp16 the GradScaler skips such steps and lowers its scale instead)
        problem = (f"non-finite gradient norm in stage '{trainer.name}' at step {trainer.step + 1} "
                   f"(finite loss {values['loss']}; rank {trainer.dist.rank})")
    if problem is not None:
        skip_nonfinite(trainer, problem)
        return None, keys, stopping
    trainer.bad_steps = 0
    values["lr"] = float(trainer.optimizer.param_groups[0]["lr"])
    if trainer.scaler is not None:
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        trainer.optimizer.step()
    trainer.scheduler.step()
    return values, keys, stopping

def skip_nonfinite(trainer: Trainer, problem: str, updates: Sequence[tuple[Any, Any]] | None = None) -> None:
    """A step with a non-finite loss or gradient norm: skip it (no update; the schedule moves on)
    while fewer than ``skip_nonfinite`` in a row were skipped, else raise FloatingPointError.

    ``updates``: the (optimizer, scheduler) pairs skipped; default the trainer's own (the GAN step
    passes the discriminator's too)."""
    trainer.bad_steps += 1
    limit = trainer.settings.skip_nonfinite
    if trainer.bad_steps > limit:
        hint = (f"{trainer.bad_steps} in a row, trainer.skip_nonfinite={limit}" if limit
                else "set trainer.skip_nonfinite=N to skip up to N such steps in a row")
        raise FloatingPointError(f"{problem}; stopping ({hint}). The last checkpoint is untouched.")
    for optimizer, scheduler in updates if updates is not None else [(trainer.optimizer, trainer.scheduler)]:
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    trainer.skipped_steps += 1
    if trainer.dist.is_main:
        log.warning("%s: skipped (%d of at most %d in a row; %d skipped in this stage)", problem,
                    trainer.bad_steps, limit, trainer.skipped_steps)
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"{trainer.name}/skipped_steps": float(trainer.skipped_steps)},
                                    step=trainer.step + 1)

def step_inputs(trainer: Trainer, batch: Any) -> Mapping[str, Any]:
    """A batch on the trainer's device, through its ``prepare`` (no grad, autocast): ``forward``'s kwargs."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"stage '{trainer.name}': dataset items must be dicts "
                        f"(e.g. {{'frames': (T, C, H, W)}}); got a batch of {type(batch)}")
    batch = to_device(batch, trainer.device)
    if trainer.prepare is None:
        return batch
    with torch.no_grad(), autocast(trainer.device, trainer.settings.precision):
        inputs = trainer.prepare(batch)
    if not isinstance(inputs, Mapping):
        raise TypeError(f"stage '{trainer.name}': prepare must return a dict of forward "
                        f"kwargs; got {type(inputs)}")
    return inputs


def check_forward_output(out: Any, stage: str, module_name: str, device: torch.device
                         ) -> tuple[Tensor, dict[str, Tensor]]:
    """``forward``'s dict → (the scalar ``"loss"``, shape ``()``; every scalar entry as a detached float32 ``()``).

    Non-scalar entries are ignored; python ints/floats become tensors on ``device``.

    Raises:
        TypeError: ``out`` is not a dict, or ``"loss"`` is not a one-element tensor.
        KeyError: no ``"loss"`` entry.
        RuntimeError: ``"loss"`` does not require grad.
    """
    if not isinstance(out, Mapping):
        raise TypeError(f"stage '{stage}': {module_name}.forward must "
                        f"return a dict with a 'loss' entry; got {type(out)}")
    if "loss" not in out:
        raise KeyError(f"stage '{stage}': {module_name}.forward returned "
                       f"keys {sorted(out)} without 'loss'")
    loss = out["loss"]
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise TypeError(f"stage '{stage}': 'loss' must be a scalar tensor; got "
                        f"{type(loss).__name__} {getattr(loss, 'shape', '')}")
    if not loss.requires_grad:
        raise RuntimeError(f"stage '{stage}': 'loss' does not require grad (are all "
                           f"parameters frozen, or was it computed under no_grad?)")
    scalars: dict[str, Tensor] = {}
    for k, v in out.items():
        if isinstance(v, Tensor) and v.numel() == 1:
            scalars[k] = v.detach().float().reshape(())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            scalars[k] = torch.tensor(float(v), device=device)
    return loss.reshape(()), scalars


class StepWindow:
    """Running means of step values and throughput since the last log."""

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # per key: GAN values start at backbone.gan.start_step
        self.count = 0
        self.samples = 0
        self.t0 = time.perf_counter()

    def add(self, values: Mapping[str, float], samples: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1
        self.samples += samples
        self.last_lr = values["lr"]

    def mean(self) -> dict[str, float]:
        """Each key's mean over the steps of the window that had it; ``lr``: the latest step's."""
        out = {k: v / max(1, self.counts[k]) for k, v in self.sums.items()}
        out["lr"] = self.last_lr  # the lr of the latest step, not a window mean
        return out

    def samples_per_s(self) -> float:
        return self.samples / max(1e-9, time.perf_counter() - self.t0)


def log_step(stage: str, step: int, max_steps: int, means: Mapping[str, float], samples_per_s: float,
             elapsed_s: float, logger: Any | None, log_path: Path) -> None:
    """Log ``{stage}/<key>`` of ``means`` (with ``lr``), ``samples_per_s`` and ``elapsed_s`` at ``step``:
    to ``logger`` (``log_metrics``), as one JSON line appended to ``log_path``, and as a log line."""
    metrics = {f"{stage}/{k}": v for k, v in means.items() if k != "lr"}
    metrics[f"{stage}/lr"] = means["lr"]
    metrics[f"{stage}/samples_per_s"] = samples_per_s
    metrics[f"{stage}/elapsed_s"] = elapsed_s
    if logger is not None:
        logger.log_metrics(metrics, step=step)
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"stage": stage, "step": step, **metrics}) + "\n")
    log.info("%s step %d/%d loss %.4g lr %.3g %.1f samples/s", stage, step, max_steps, means["loss"],
             means["lr"], samples_per_s)
