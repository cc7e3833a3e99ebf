"""Experiment loggers: W&B (offline by default) or none.

Every logger has ``log_metrics(metrics, step)``, ``log_summary(metrics)``,
``log_media(key, path)`` and ``finish()``. Metrics always also reach the run directory
(``train_log.jsonl`` from the trainer, ``metrics.json`` from the evaluator), so
``logger=none`` loses nothing but the dashboard.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: File in the run directory holding the W&B run id, for resuming the run.
RUN_ID_FILE = "wandb_run_id"


class NoLogger:
    """Logs nothing (``logger=none``, and every rank but 0 under DDP)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_summary(self, metrics: dict[str, float]) -> None:
        pass

    def log_media(self, key: str, path: Path) -> None:
        pass

    def finish(self, preempted: bool = False) -> None:
        pass


class WandbLogger(NoLogger):
    """Weights & Biases run: scalars, the resolved config, and media files (GIF / PNG).

    ``mode="offline"`` (default) writes under ``run_dir/wandb`` with no network;
    ``mode="online"`` streams to the server (set ``WANDB_API_KEY``).

    The run id is kept in ``run_dir/wandb_run_id``: with ``resume=True`` a run directory that has
    one continues that W&B run (``wandb.init(id=..., resume="allow")``), so a pre-empted and
    restarted job stays one run on the dashboard.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, config: dict[str, Any], name: str | None = None,
                 resume: bool = False):
        import wandb

        self._wandb = wandb
        self._step_metrics: set[str] = set()
        id_file = Path(run_dir) / RUN_ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
        if run_id:
            log.info("resuming W&B run %s (from %s)", run_id, id_file)
        self.run = wandb.init(
            project=cfg.project, entity=cfg.get("entity"), group=cfg.get("group"),
            tags=list(cfg.get("tags") or []), mode=cfg.mode, dir=str(run_dir), config=config,
            name=name, reinit="finish_previous", id=run_id, resume="allow" if run_id else None,
        )
        id_file.parent.mkdir(parents=True, exist_ok=True)
        id_file.write_text(self.run.id + "\n")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log ``{"<stage>/<name>": value}`` against that stage's own step axis ``<stage>/step``.

        Each stage counts steps from 0, so W&B's single monotonic step would drop the second
        stage's points; ``define_metric`` gives every stage prefix its own x-axis instead.
        """
        for prefix in {key.split("/", 1)[0] for key in metrics} - self._step_metrics:
            self.run.define_metric(f"{prefix}/step")
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
            self._step_metrics.add(prefix)
        prefixes = {key.split("/", 1)[0] for key in metrics}
        self.run.log({**metrics, **{f"{p}/step": step for p in prefixes}})

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(dict(metrics))

    def log_media(self, key: str, path: Path) -> None:
        # The GIF is written by us (Pillow); wandb.Video on raw arrays would need moviepy.
        media = self._wandb.Video(str(path), format="gif") if str(path).endswith(".gif") else self._wandb.Image(str(path))
        self.run.log({key: media})

    def finish(self, preempted: bool = False) -> None:
        """End the run; ``preempted`` marks it so on the dashboard (it continues when resumed)."""
        if preempted:
            self.run.mark_preempting()
        self.run.finish(exit_code=1 if preempted else None)


def build_logger(cfg: DictConfig, run_dir: Path, is_main: bool = True, name: str | None = None) -> NoLogger:
    """The logger named by ``cfg.logger.name`` (``wandb`` or ``none``); :class:`NoLogger` off rank 0.

    Raises:
        ValueError: unknown ``logger.name``.
    """
    kind = cfg.logger.name
    if kind not in ("wandb", "none"):
        raise ValueError(f"unknown logger.name '{kind}'; valid: wandb, none")
    if kind == "none" or not is_main:
        return NoLogger()
    config = OmegaConf.to_container(cfg, resolve=True)
    resume = cfg.get("trainer", {}).get("resume", False) not in (False, None)
    return WandbLogger(cfg.logger, run_dir, config, name=name, resume=resume)
