"""Schemas of the top-level run config (``configs/main.yaml``) and of its small groups: ``eval``,
``cache`` and ``logger``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from futurelat.config.trainer import TrainerSettings


@dataclass
class EvalConfig:
    """``eval`` (``configs/eval/*.yaml``): scoring on the test split after training.

    ``batch_size`` (>= 1): test clips per step. ``max_sequences``: score the first K test clips
    (null = all). ``num_visualize``: sequences drawn in the pictures. ``num_samples`` (>= 1):
    futures drawn per context (``test/*`` is their mean, ``test/best_of_k/*`` the best).
    ``reconstruct_sequences``: the backbone's reconstruction ceiling (``reconstruction/*``) on the
    first K test clips (null = all). ``backbone_predictor``: latent-space evaluation also scores the
    backbone's own pretrained predictor (V-JEPA 2) on the raw test frames. ``fvd_weights``: I3D
    weights for FVD on pixel runs (a file or folder, :mod:`futurelat.evaluation.fvd`); null = those
    cached in ``$TORCH_HOME/futurelat/``, else FVD is skipped with a one-line note. ``weights``:
    ``auto`` (the EMA weights of a stage that kept them, ``trainer.ema``, else the trained ones) |
    ``ema`` (an error without them) | ``raw`` (the trained weights). ``point_estimate``:
    ``sample`` (score each of the ``num_samples`` futures) | ``mean`` | ``median`` (score their
    per-pixel, or per-latent, mean or median, ``num_samples >= 2``; :mod:`futurelat.evaluation.ensemble`); a model whose
    rollouts are deterministic draws one future whatever ``num_samples``. ``frame_gain_sequences``
    (>= 0; frame evaluation): fit a gain per future step in [0, 1] on the last K clips of the
    training split and scale the rollouts by it (:mod:`futurelat.evaluation.frame_gain`; the unscaled
    scores stay as ``test/raw/*``); 0 = off. A run scored in latent space ignores it.
    """

    batch_size: int = 100
    max_sequences: Optional[int] = None
    num_visualize: int = 8
    num_samples: int = 1
    reconstruct_sequences: Optional[int] = 200
    backbone_predictor: bool = True
    fvd_weights: Optional[str] = None
    weights: str = "auto"
    point_estimate: str = "sample"
    frame_gain_sequences: int = 0


@dataclass
class CacheConfig:
    """``cache`` (``configs/cache/default.yaml``), read by ``python -m futurelat.cache``; the keys
    are explained in :mod:`futurelat.cache`. ``device``, ``precision`` and ``progress`` follow
    ``trainer.*`` in the YAML."""

    splits: List[str] = field(default_factory=lambda: ["train", "test"])
    batch_size: int = 8
    num_workers: int = 4
    dtype: str = "float16"
    max_items: Optional[int] = None
    device: str = "auto"
    precision: str = "fp32"
    progress: bool = True


@dataclass
class LoggerConfig:
    """``logger=none``: metrics go to the run directory only (train_log.jsonl, metrics.json)."""

    name: str = "none"


@dataclass
class WandbLoggerConfig(LoggerConfig):
    """``logger=wandb``: Weights & Biases; ``mode`` ``offline`` (sync later with ``wandb sync``) |
    ``online`` | ``disabled``."""

    name: str = "wandb"
    mode: str = "offline"
    project: str = "futurelat"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """The whole run (``configs/main.yaml``).

    ``stages``: run in order, among ``backbone`` (train it), ``head`` (train the head on the frozen backbone), ``evaluate``. ``seed``: the run's
    seed (``trainer.seed`` follows it). ``optimized_metric``: the metric ``main`` returns to
    sweepers; null = the run's main error (``test/mse`` for pixel runs, ``test/l1`` for latent
    runs). ``dataset``, ``backbone``, ``head`` and ``logger`` are typed by their group option's own
    schema (:mod:`futurelat.config.store`).
    """

    stages: List[str] = field(default_factory=lambda: ["backbone", "head", "evaluate"])
    seed: int = 0
    optimized_metric: Optional[str] = None
    dataset: Any = None
    backbone: Any = None
    head: Any = None
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    logger: Any = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
