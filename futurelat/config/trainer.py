"""Schema of ``trainer`` (``configs/trainer/*.yaml``): the settings every stage shares, then each
stage's schedule (``trainer.backbone``: stage 1, the backbone; ``trainer.head``: stage 2,
the head on the frozen backbone).

:class:`TrainerSettings` and :class:`StageSchedule` are both the Hydra schema (OmegaConf checks
types and refuses unknown keys while composing) and what :class:`futurelat.training.trainer.Trainer`
reads: ``from_cfg`` merges a config or a partial dict into the schema (missing keys take the
defaults below), then checks the ranges that types cannot express.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from futurelat.config.check import merge_schema

from futurelat.training.preemption import DEFAULT_STOP_SIGNALS, parse_signals
from futurelat.utils.cpu_memory import CPU_MALLOC_MODES
from futurelat.utils.precision import PRECISIONS  # valid trainer.precision values: fp32 | bf16 | fp16 (CUDA)

#: The trained stages, in order (``trainer.<stage>`` holds each one's schedule).
STAGES = ("backbone", "head")
#: Valid ``trainer.resume`` values.
RESUME_MODES = (True, False, "auto")


@dataclass
class StageSchedule:
    """One stage's schedule: ``max_steps`` (> 0) optimizer steps of ``batch_size`` (> 0) samples
    per rank per micro-step (clips; the backbone stage sees ``backbone.frames_per_clip`` frames of each), peak learning rate ``lr`` (> 0), linear warmup over ``warmup_steps``
    (in [0, max_steps]), cosine decay to ``lr * min_lr_ratio`` (in [0, 1]); see
    :mod:`futurelat.training.optim`. Every key is required (no schedule suits both stages)."""

    max_steps: int = MISSING
    batch_size: int = MISSING
    lr: float = MISSING
    warmup_steps: int = MISSING
    min_lr_ratio: float = MISSING

    @classmethod
    def from_cfg(cls, cfg: Mapping | DictConfig, name: str) -> "StageSchedule":
        """The schedule of stage ``name`` from ``trainer.<name>``.

        Raises:
            KeyError: a missing key (named, with the stage).
            ValueError: an unknown key or a value of the wrong type (``trainer.<name>.<key>``
                named, :func:`~futurelat.config.check.merge_schema`), or a value out of range.
        """
        raw = _to_plain(cfg)
        missing = [f.name for f in fields(cls) if f.name not in raw]
        if missing:
            raise KeyError(f"stage '{name}' config is missing {missing} (has {sorted(raw)})")
        s = merge_schema(cls, raw, f"trainer.{name}")
        if s.max_steps <= 0:
            raise ValueError(f"stage '{name}': max_steps must be > 0; got {s.max_steps}")
        if s.batch_size <= 0:
            raise ValueError(f"stage '{name}': batch_size must be > 0; got {s.batch_size}")
        if not s.lr > 0:
            raise ValueError(f"stage '{name}': lr must be > 0; got {s.lr}")
        if not 0 <= s.warmup_steps <= s.max_steps:
            raise ValueError(f"stage '{name}': warmup_steps must be in [0, max_steps="
                             f"{s.max_steps}]; got {s.warmup_steps}")
        if not 0.0 <= s.min_lr_ratio <= 1.0:
            raise ValueError(f"stage '{name}': min_lr_ratio must be in [0, 1]; got {s.min_lr_ratio}")
        return s


@dataclass
class EMASettings:
    """``trainer.ema``: an exponential moving average of the weights (:mod:`futurelat.training.ema`).

    ``decay``: in (0, 1), e.g. 0.999; null = no EMA. ``stages``: the stages that keep one (``head``,
    ``backbone``). ``warmup``: the decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after update ``n``.
    Evaluation uses the EMA weights when the head kept them (``eval.weights``).
    """

    decay: Optional[float] = None
    stages: List[str] = field(default_factory=lambda: ["head"])
    warmup: bool = True


@dataclass
class TrainerSettings:
    """Settings shared by every stage (``configs/trainer/default.yaml``).

    ``device``: ``auto`` | ``cpu`` | ``cuda`` (must agree with the process group's device).
    ``precision``: one of :data:`PRECISIONS`. ``grad_clip``: max global gradient L2 norm (> 0),
    null = none. ``weight_decay``, ``betas``: AdamW's (decay on 2-d+ parameters only).
    ``grad_accum_steps`` (>= 1): micro-batches per optimizer step. ``log_every`` (>= 1): steps
    between logged metrics. ``ckpt_every`` (>= 0): steps between ``{stage}_last.pt`` saves
    (null/0: only at the end and on a stop signal). ``resume``: ``auto`` (continue from
    ``checkpoints/{stage}_last.pt`` when it exists) | true (must) | false. ``stop_signals``:
    signals that end training after the current step, which is saved
    (:mod:`futurelat.training.preemption`). ``skip_nonfinite`` (>= 0): consecutive non-finite steps
    skipped before stopping. ``num_workers`` (>= 0): DataLoader workers per rank. ``seed`` (>= 0):
    data order and RNG (rank r uses seed + r). ``progress``: a progress bar on rank 0.
    ``find_unused_parameters``: passed to ``DistributedDataParallel``. ``cpu_malloc``: ``system`` |
    ``reuse`` (:mod:`futurelat.utils.cpu_memory`). ``gradient_checkpointing``: recompute each head
    block's activations in backward (less memory, ~1 more forward per step). ``compile``: train a
    head's trunk through ``torch.compile`` (:mod:`futurelat.training.compile`; the first step
    compiles, evaluation stays eager). ``ema``: :class:`EMASettings`.
    """

    device: str = "auto"
    precision: str = "fp32"
    grad_clip: Optional[float] = 1.0
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_accum_steps: int = 1
    log_every: int = 25
    ckpt_every: Optional[int] = 250
    resume: Any = "auto"
    stop_signals: List[str] = field(default_factory=lambda: list(DEFAULT_STOP_SIGNALS))
    skip_nonfinite: int = 0
    num_workers: int = 0
    seed: int = 0
    progress: bool = True
    find_unused_parameters: bool = False
    cpu_malloc: str = "system"
    gradient_checkpointing: bool = False
    compile: bool = False
    ema: EMASettings = field(default_factory=EMASettings)
    backbone: StageSchedule = field(default_factory=lambda: StageSchedule(
        max_steps=250, batch_size=32, lr=2.0e-3, warmup_steps=50, min_lr_ratio=0.1))
    head: StageSchedule = field(default_factory=lambda: StageSchedule(
        max_steps=6000, batch_size=1, lr=6.0e-3, warmup_steps=100, min_lr_ratio=0.1))

    @classmethod
    def from_cfg(cls, cfg: Mapping | DictConfig | None) -> "TrainerSettings":
        """``trainer`` (a config or a partial dict; missing keys take the defaults) as settings.

        Raises:
            ValueError: an unknown key or a value of the wrong type (named, as
                :func:`~futurelat.config.check.merge_schema` does), or a value out of range (the
                message names the ``trainer.<key>``).
        """
        s = merge_schema(cls, _to_plain(cfg), "trainer")
        if s.precision not in PRECISIONS:
            raise ValueError(f"trainer.precision must be one of {sorted(PRECISIONS)}; got {s.precision!r}")
        if s.grad_clip is not None and not s.grad_clip > 0:
            raise ValueError(f"trainer.grad_clip must be > 0 or null; got {s.grad_clip}")
        for key in ("log_every", "grad_accum_steps"):
            if getattr(s, key) < 1:
                raise ValueError(f"trainer.{key} must be >= 1; got {getattr(s, key)}")
        if s.ckpt_every is not None and s.ckpt_every < 0:
            raise ValueError(f"trainer.ckpt_every must be >= 0 or null; got {s.ckpt_every}")
        if s.num_workers < 0:
            raise ValueError(f"trainer.num_workers must be >= 0; got {s.num_workers}")
        if s.seed < 0:
            raise ValueError(f"trainer.seed must be >= 0; got {s.seed}")
        if s.cpu_malloc not in CPU_MALLOC_MODES:
            raise ValueError(f"trainer.cpu_malloc must be one of {CPU_MALLOC_MODES}; got {s.cpu_malloc!r}")
        if s.resume not in RESUME_MODES:
            raise ValueError(f"trainer.resume must be one of auto | true | false; got {s.resume!r}")
        if s.skip_nonfinite < 0:
            raise ValueError(f"trainer.skip_nonfinite must be >= 0; got {s.skip_nonfinite}")
        parse_signals(s.stop_signals)
        if s.ema.decay is not None and not 0.0 < s.ema.decay < 1.0:
            raise ValueError(f"trainer.ema.decay must be in (0, 1) or null; got {s.ema.decay}")
        unknown = sorted(set(s.ema.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"trainer.ema.stages: unknown stage(s) {unknown}; valid: {list(STAGES)}")
        return s


def _to_plain(cfg: Mapping | DictConfig | None) -> dict[str, Any]:
    """A resolved plain dict of ``cfg`` (interpolations such as ``${seed}`` need the whole config)."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise TypeError(f"expected a DictConfig or dict; got {type(cfg)}")
