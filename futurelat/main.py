"""``python -m futurelat.main``: train the backbone, then the head on it, then evaluate.

    python -m futurelat.main                               # Moving MNIST -> VQ-VAE -> Mamba prior
    python -m futurelat.main +experiment=mmnist_vqvae_mamba_large
    python -m futurelat.main --cfg job                     # print the resolved config and exit
    python -m futurelat.main -m head.params.d_model=64,128 # a multirun sweep
    torchrun --nproc_per_node 2 -m futurelat.main          # DDP

The Hydra run directory receives ``config.yaml``, ``checkpoints/``, ``train_log.jsonl``,
``metrics.json``, ``predictions.gif`` and ``predictions.png``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Subset

from futurelat.config import check_config, register_configs
from futurelat.datasets import build_dataset
from futurelat.datasets.latent_cache import check_cache_for_model, is_latent_cache
from futurelat.evaluation.curves import write_curves
from futurelat.evaluation.ensemble import check_point_estimate
from futurelat.evaluation.results import write_metrics
from futurelat.evaluation.evaluator import evaluate_frames
from futurelat.evaluation.frame_gain import fit_frame_gain
from futurelat.evaluation.fvd import maybe_fvd
from futurelat.evaluation.latent_evaluator import PICTURE_FILE as LATENT_PICTURE
from futurelat.evaluation.latent_evaluator import FramesBaseline, evaluate_latents, summarize_latents
from futurelat.models.gan.build import build_gan
from futurelat.models.latent_video_model import LatentVideoModel, build_model
from futurelat.registry import BACKBONES
from futurelat.training.config_match import load_checked_weights
from futurelat.training.distributed import DistInfo, init_distributed
from futurelat.training.ema import check_eval_weights, eval_weights_key
from futurelat.training.preemption import TrainingInterrupted
from futurelat.training.stage_checkpoints import LEGACY_STAGE_NAMES
from futurelat.training.trainer import Trainer
from futurelat.utils import launch_time
from futurelat.utils.cpu_memory import configure_cpu_malloc
from futurelat.utils.resolved_config import print_config, save_config
from futurelat.utils.run_logger import build_logger
from futurelat.utils.seeding import seed_everything

log = logging.getLogger(__name__)
launch_time.register()  # ${launch_time:...} in hydra.run.dir: one run directory for all torchrun ranks
register_configs()  # the schemas (base_*) that configs/ builds on: futurelat/config/

STAGES = ("backbone", "head", "evaluate")
#: The stage names used before 2026-11-30, refused with their new name (old → new; one table with resuming's).
RENAMED_STAGES = {old: new for new, old in LEGACY_STAGE_NAMES.items()}
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def _check_stages(cfg: DictConfig) -> list[str]:
    stages = list(cfg.stages)
    renamed = [f"{s} -> {RENAMED_STAGES[s]}" for s in stages if s in RENAMED_STAGES]
    if renamed:
        raise ValueError(f"stage(s) renamed: {', '.join(renamed)} (stages=[backbone,head,evaluate]; "
                         "trainer.tokenizer/trainer.predictor are now trainer.backbone/trainer.head)")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} in `stages`; valid: {list(STAGES)}")
    cached = is_latent_cache(cfg.dataset)
    if cached and "backbone" in stages:  # the cache was written by a fixed backbone: nothing to train
        log.info("dataset '%s' is a latent cache: skipping the backbone stage", cfg.dataset.name)
        stages.remove("backbone")
    needs_weights = "evaluate" in stages or ("head" in stages and not cached)
    if ("backbone" not in stages and BACKBONES.get(cfg.backbone.name).trainable and not cfg.backbone.checkpoint
            and needs_weights):
        raise ValueError("stages without `backbone` need a trained backbone: set backbone.checkpoint=PATH "
                         "(e.g. <run_dir>/checkpoints/backbone_final.pt)")
    check_eval_weights(cfg.eval.weights)
    check_point_estimate(str(cfg.eval.point_estimate), int(cfg.eval.num_samples))  # before training, not after
    if not isinstance(cfg.eval.frame_gain_sequences, int) or cfg.eval.frame_gain_sequences < 0:
        raise ValueError(f"eval.frame_gain_sequences must be an int >= 0 (0 = off); got {cfg.eval.frame_gain_sequences!r}")
    if cfg.eval.weights == "ema" and cfg.trainer.ema.decay is None and not (cfg.backbone.checkpoint or cfg.head.checkpoint):
        raise ValueError("eval.weights=ema, but trainer.ema.decay is null: set trainer.ema.decay (e.g. 0.999) "
                         "or eval.weights=auto")
    if "head" not in stages and not cfg.head.checkpoint and "evaluate" in stages:
        raise ValueError("stages without `head` need a trained head: set head.checkpoint=PATH "
                         "(e.g. <run_dir>/checkpoints/head_final.pt)")
    return stages


def run(cfg: DictConfig, run_dir: Path, dist: DistInfo | None = None) -> dict[str, float] | None:
    """Run ``cfg.stages`` in ``run_dir``; returns the evaluation metrics (rank 0) or ``None``.

    Every stage, the frozen backbone and the evaluation run on the one device ``trainer.device``
    decides for this process (under torchrun: ``cuda:LOCAL_RANK`` with nccl, or the CPU with gloo).

    Raises:
        ValueError: a key the schemas do not know (appended with ``+key=value``), before anything runs.
        TrainingInterrupted: a stop signal (``trainer.stop_signals``) ended a stage after its
            checkpoint was written; :func:`main` exits with its ``exit_code``.
    """
    check_config(cfg)
    dist = dist or init_distributed(str(cfg.trainer.device))
    stages = _check_stages(cfg)
    if dist.device.type == "cpu":  # the evaluation's rollouts too, also in a run without training
        configure_cpu_malloc(str(cfg.trainer.cpu_malloc))
    if dist.is_main:
        print_config(cfg)
        save_config(cfg, run_dir / "config.yaml")
    seed_everything(int(cfg.seed))
    model: LatentVideoModel = build_model(cfg)  # fails here, before training, if the pair does not fit
    if is_latent_cache(cfg.dataset):  # and here if the cache was written by another backbone
        check_cache_for_model(cfg.dataset, cfg.backbone.name, model.spec)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = build_logger(cfg, run_dir, dist.is_main, name=run_dir.name)
    train_set = None
    preempted = False
    try:
        # ---- stage 1: the backbone
        if cfg.backbone.checkpoint:
            load_checked_weights(cfg, "backbone", model.backbone)
        elif "backbone" in stages and model.backbone.trainable:
            train_set = build_dataset(cfg.dataset, "train")
            k = int(cfg.backbone.get("frames_per_clip") or cfg.dataset.context_frames + cfg.dataset.future_frames)
            gan = build_gan(cfg.backbone.gan, in_channels=int(cfg.dataset.channels))  # None: GAN off
            trainer = Trainer(model.backbone, train_set, cfg.trainer, cfg.trainer.backbone, run_dir, name="backbone",
                              prepare=lambda batch: {"frames": model.backbone.sample_training_frames(batch["frames"], k)},
                              logger=logger, config_to_save=resolved, dist=dist, gan=gan)
            trainer.fit()
            _use_ema(trainer, cfg.eval.weights)
        model.backbone.freeze()
        model.to(dist.device)

        # ---- stage 2: the head on the frozen backbone
        if cfg.head.checkpoint:
            load_checked_weights(cfg, "head", model.head)
        elif "head" in stages:
            train_set = train_set or build_dataset(cfg.dataset, "train")
            trainer = Trainer(model.head, train_set, cfg.trainer, cfg.trainer.head, run_dir, name="head",
                              prepare=model.head_inputs, logger=logger, config_to_save=resolved, dist=dist)
            trainer.fit()
            _use_ema(trainer, cfg.eval.weights)
        _report_skipped(train_set, "train")
        if dist.is_main:
            write_curves(run_dir)  # curves.png: train_log.jsonl drawn per stage (none for an eval-only run)

        # ---- evaluation (rank 0)
        metrics = None
        if "evaluate" in stages and dist.is_main:
            torch.manual_seed(int(cfg.seed))  # sampled rollouts: the same for a full run and an eval-only run
            metrics, pictures = evaluate(cfg, model, run_dir, dist.device)
            logger.log_summary(metrics)
            for name in pictures:
                if (run_dir / name).exists():
                    logger.log_media(f"eval/{name.replace('.', '_')}", run_dir / name)
            _print_summary(metrics, run_dir)
        if dist.world_size > 1:
            torch.distributed.barrier()
        return metrics
    except TrainingInterrupted:
        preempted = True
        raise
    finally:
        logger.finish(preempted=preempted)


def _use_ema(trainer: Trainer, choice: str) -> None:
    """After a stage: its EMA weights replace the trained ones (what later stages and evaluation use)
    when it kept one and ``eval.weights`` is not ``raw``; the checkpoints hold both either way."""
    if eval_weights_key(choice, trainer.ema is not None, f"stage '{trainer.name}'") == "ema_model":
        trainer.ema.copy_to(trainer.module)
        if trainer.dist.is_main:
            log.info("stage '%s': its EMA weights (decay %s, %d updates) are used from here on; eval.weights=raw "
                     "keeps the trained ones", trainer.name, trainer.ema.decay, trainer.ema.updates)


def evaluate(cfg: DictConfig, model: LatentVideoModel, run_dir: Path,
             device: torch.device | str) -> tuple[dict[str, float], tuple[str, ...]]:
    """Score ``model`` on the test split; returns the metrics and the picture files written.

    A backbone with a pixel decoder is scored on frames (:func:`evaluate_frames`; for a latent
    cache, on the frames of its ``dataset.source``). One without (V-JEPA 2) is scored in latent
    space (:func:`evaluate_latents`), beside copy-last-latent and, when the backbone has its own
    pretrained predictor (``has_predictor``) and ``eval.backbone_predictor`` is true, that predictor
    as a zero-shot baseline (``test/<backbone>_predictor/*``), on the raw test clips it needs.
    """
    common = dict(batch_size=int(cfg.eval.batch_size), device=device, out_dir=run_dir,
                  num_visualize=int(cfg.eval.num_visualize), max_sequences=cfg.eval.max_sequences,
                  progress=bool(cfg.trainer.progress), num_samples=int(cfg.eval.num_samples))
    if model.backbone.has_decoder:
        test_set = build_dataset(cfg.dataset.get("source", cfg.dataset), "test")  # frames, also for a cache
        metrics = evaluate_frames(
            model, test_set, context_frames=int(cfg.dataset.context_frames),
            future_frames=int(cfg.dataset.future_frames),
            reconstruct_sequences=cfg.eval.reconstruct_sequences, fvd=maybe_fvd(cfg.eval.fvd_weights, device=device),
            point_estimate=str(cfg.eval.point_estimate), frame_gain=_fit_frame_gain(cfg, model, device), **common)
        return _with_skipped(metrics, test_set, run_dir), ("predictions.gif", "predictions.png")
    step = model.spec.temporal_downsample
    test_config, baselines = cfg.dataset, {}
    if getattr(model.backbone, "has_predictor", False) and cfg.eval.backbone_predictor:
        # The pretrained predictor reads context frames: score everything on the raw test clips.
        test_config = cfg.dataset.get("source", cfg.dataset)
        baselines[f"{cfg.backbone.name}_predictor"] = FramesBaseline(model.backbone.predict_future)
    test_set = build_dataset(test_config, "test")
    metrics = evaluate_latents(
        model, test_set, context_latents=int(cfg.dataset.context_frames) // step,
        future_latents=int(cfg.dataset.future_frames) // step, extra_baselines=baselines,
        point_estimate=str(cfg.eval.point_estimate), **common)
    return _with_skipped(metrics, test_set, run_dir), (LATENT_PICTURE,)


def _fit_frame_gain(cfg: DictConfig, model: LatentVideoModel, device: torch.device | str) -> torch.Tensor | None:
    """The gains of ``eval.frame_gain_sequences`` (:mod:`futurelat.evaluation.frame_gain`): fitted on the
    last K clips of the training split (frames, also for a cache), or ``None`` when it is 0."""
    count = int(cfg.eval.frame_gain_sequences)
    if count == 0:
        return None
    train_set = build_dataset(cfg.dataset.get("source", cfg.dataset), "train")
    held_out = Subset(train_set, range(max(0, len(train_set) - count), len(train_set)))
    gain = fit_frame_gain(model, held_out, int(cfg.dataset.context_frames), int(cfg.dataset.future_frames),
                          batch_size=int(cfg.eval.batch_size), device=device, progress=bool(cfg.trainer.progress))
    log.info("frame gains per future step, fitted on the last %d training clips: %s", len(held_out),
             " ".join(f"{g:.3f}" for g in gain.tolist()))
    return gain


def _report_skipped(dataset: Any, split: str) -> int:
    """Log how many videos a dataset skipped (missing or unreadable; e.g. Kinetics); returns the count.

    Unreadable videos met inside DataLoader workers are counted there, not here: with
    ``trainer.num_workers > 0`` the training figure holds the missing files and the main
    process's unreadable ones (each worker warns once per file it skips).
    """
    skipped = int(getattr(dataset, "num_skipped", 0) or 0)
    if skipped:
        log.warning("%s split: %d video(s) skipped (%d missing, %d unreadable); see the warnings above", split,
                    skipped, len(getattr(dataset, "missing", ())), len(getattr(dataset, "unreadable", ())))
    return skipped


def _with_skipped(metrics: dict[str, float], test_set: Any, run_dir: Path) -> dict[str, float]:
    """Add ``test/skipped_videos`` (datasets that skip bad videos) to the metrics and metrics.json."""
    if not hasattr(test_set, "num_skipped"):
        return metrics
    metrics = dict(sorted({**metrics, "test/skipped_videos": float(_report_skipped(test_set, "test"))}.items()))
    write_metrics(metrics, run_dir)
    return metrics


def _print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    if "test/cosine" in metrics:  # latent-space evaluation
        console = Console()
        console.print(summarize_latents(metrics))
        console.print(f"outputs: {run_dir}")
        return
    table = Table(title=f"test set ({int(metrics.get('test/num_sequences', 0))} sequences)")
    for col in ("", "MSE ↓", "MAE ↓", "SSIM ↑", "PSNR ↑"):
        table.add_column(col)
    rows = [("model", "test"), ("copy last frame", "test/copy_last"), ("black frames", "test/zeros")]
    if "test/best_of_k/mse" in metrics:
        rows.insert(1, (f"best of {int(metrics['test/num_samples'])} samples", "test/best_of_k"))
    if "test/sample/mse" in metrics:  # test/* is the median or mean of the samples
        rows[0] = (f"model (point estimate of {int(metrics['test/num_samples'])})", "test")
        rows.insert(1, ("one sample", "test/sample"))
    if "test/raw/mse" in metrics:  # test/* is scaled by the fitted frame gains
        rows.insert(1, ("model, unscaled", "test/raw"))
    for label, prefix in rows:
        table.add_row(label, *(f"{metrics[f'{prefix}/{m}']:.2f}" if m != "ssim" else f"{metrics[f'{prefix}/{m}']:.3f}"
                               for m in ("mse", "mae", "ssim", "psnr")))
    console = Console()
    console.print(table)
    if "reconstruction/psnr" in metrics:
        console.print(f"backbone reconstruction PSNR: {metrics['reconstruction/psnr']:.2f} dB")
    console.print(f"outputs: {run_dir}")


def optimized_value(metrics: Mapping[str, float], name: str | None) -> float:
    """The metric ``optimized_metric`` names, which ``main`` returns to sweepers (Optuna minimises it).

    ``name=None`` picks the run's main error: ``test/l1`` for latent-space runs (their metrics
    hold ``test/cosine``; backbones without a decoder, V-JEPA 2), else ``test/mse`` (pixels).

    Raises:
        KeyError: ``optimized_metric`` names no metric of the run; the message lists them.
    """
    name = name or ("test/l1" if "test/cosine" in metrics else "test/mse")
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} is not a metric of this run; "
                       f"choose one of {sorted(k for k in metrics if '/step_' not in k)}")
    return float(metrics[name])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="main")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        sys.exit(stop.exit_code)  # 128 + signal: what a requeue or torchrun expects of a signalled job
    # Returned for sweepers that optimise a value (rank 0 only; None on the other ranks).
    return None if metrics is None else optimized_value(metrics, cfg.optimized_metric)


if __name__ == "__main__":
    main()
