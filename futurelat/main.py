"""``python -m futurelat.main``: train the tokenizer, then the predictor, then evaluate.

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
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from futurelat.datasets import build_dataset
from futurelat.evaluation.evaluator import evaluate_frames
from futurelat.models.latent_video_model import LatentVideoModel, build_model
from futurelat.training.checkpoint import load_module_weights
from futurelat.training.distributed import DistInfo, init_distributed
from futurelat.training.trainer import Trainer
from futurelat.utils.config import print_config, save_config
from futurelat.utils.logging import build_logger

log = logging.getLogger(__name__)

STAGES = ("tokenizer", "predictor", "evaluate")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def sample_frames(batch: Mapping[str, Tensor], frames_per_clip: int) -> dict[str, Tensor]:
    """Stage-1 ``prepare``: ``frames_per_clip`` random frames of each clip.

    ``{"frames": (B, T, C, H, W)}`` → ``{"frames": (B, k, C, H, W)}``. Uses the global torch
    RNG, which the trainer checkpoints, so resumed runs draw the same frames.
    """
    frames = batch["frames"]
    b, t = frames.shape[:2]
    k = min(frames_per_clip, t)
    index = torch.rand(b, t).argsort(dim=1)[:, :k].to(frames.device)
    return {"frames": frames[torch.arange(b, device=frames.device)[:, None], index]}


def _check_stages(cfg: DictConfig) -> list[str]:
    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} in `stages`; valid: {list(STAGES)}")
    if "tokenizer" not in stages and not cfg.backbone.checkpoint and ("predictor" in stages or "evaluate" in stages):
        raise ValueError("stages without `tokenizer` need a trained backbone: set backbone.checkpoint=PATH "
                         "(e.g. <run_dir>/checkpoints/tokenizer_final.pt)")
    if "predictor" not in stages and not cfg.head.checkpoint and "evaluate" in stages:
        raise ValueError("stages without `predictor` need a trained head: set head.checkpoint=PATH "
                         "(e.g. <run_dir>/checkpoints/predictor_final.pt)")
    return stages


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig, run_dir: Path, dist: DistInfo | None = None) -> dict[str, float] | None:
    """Run ``cfg.stages`` in ``run_dir``; returns the evaluation metrics (rank 0) or ``None``."""
    dist = dist or init_distributed()
    stages = _check_stages(cfg)
    if dist.is_main:
        print_config(cfg)
        save_config(cfg, run_dir / "config.yaml")
    _seed_everything(int(cfg.seed))
    model: LatentVideoModel = build_model(cfg)  # fails here, before training, if the pair does not fit
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = build_logger(cfg, run_dir, dist.is_main, name=run_dir.name)
    train_set = None
    try:
        # ---- stage 1: tokenizer
        if cfg.backbone.checkpoint:
            load_module_weights(cfg.backbone.checkpoint, model.backbone)
        elif "tokenizer" in stages and model.backbone.trainable:
            train_set = build_dataset(cfg.dataset, "train")
            k = int(cfg.backbone.get("frames_per_clip") or cfg.dataset.context_frames + cfg.dataset.future_frames)
            Trainer(model.backbone, train_set, cfg.trainer, cfg.trainer.tokenizer, run_dir, name="tokenizer",
                    prepare=lambda batch: sample_frames(batch, k), logger=logger,
                    config_to_save=resolved, dist=dist).fit()
        model.backbone.freeze()
        model.to(dist.device)

        # ---- stage 2: predictor on the frozen backbone
        if cfg.head.checkpoint:
            load_module_weights(cfg.head.checkpoint, model.head)
        elif "predictor" in stages:
            train_set = train_set or build_dataset(cfg.dataset, "train")
            Trainer(model.head, train_set, cfg.trainer, cfg.trainer.predictor, run_dir, name="predictor",
                    prepare=model.head_inputs, logger=logger, config_to_save=resolved, dist=dist).fit()

        # ---- evaluation (rank 0)
        metrics = None
        if "evaluate" in stages and dist.is_main:
            torch.manual_seed(int(cfg.seed))  # sampled rollouts: the same for a full run and an eval-only run
            metrics = evaluate_frames(
                model, build_dataset(cfg.dataset, "test"),
                context_frames=int(cfg.dataset.context_frames), future_frames=int(cfg.dataset.future_frames),
                batch_size=int(cfg.eval.batch_size), device=dist.device, out_dir=run_dir,
                num_visualize=int(cfg.eval.num_visualize), max_sequences=cfg.eval.max_sequences,
                progress=bool(cfg.trainer.progress), num_samples=int(cfg.eval.num_samples),
            )
            logger.log_summary(metrics)
            for name in ("predictions.gif", "predictions.png"):
                if (run_dir / name).exists():
                    logger.log_media(f"eval/{name.replace('.', '_')}", run_dir / name)
            _print_summary(metrics, run_dir)
        if dist.world_size > 1:
            torch.distributed.barrier()
        return metrics
    finally:
        logger.finish()


def _print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"test set ({int(metrics.get('test/num_sequences', 0))} sequences)")
    for col in ("", "MSE ↓", "MAE ↓", "SSIM ↑", "PSNR ↑"):
        table.add_column(col)
    rows = [("model", "test"), ("copy last frame", "test/copy_last"), ("black frames", "test/zeros")]
    if "test/best_of_k/mse" in metrics:
        rows.insert(1, (f"best of {int(metrics['test/num_samples'])} samples", "test/best_of_k"))
    for label, prefix in rows:
        table.add_row(label, *(f"{metrics[f'{prefix}/{m}']:.2f}" if m != "ssim" else f"{metrics[f'{prefix}/{m}']:.3f}"
                               for m in ("mse", "mae", "ssim", "psnr")))
    console = Console()
    console.print(table)
    if "tokenizer/psnr" in metrics:
        console.print(f"tokenizer reconstruction PSNR: {metrics['tokenizer/psnr']:.2f} dB")
    console.print(f"outputs: {run_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="main")
def main(cfg: DictConfig) -> float | None:
    metrics = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    # Returned for sweepers that optimise a value.
    return None if metrics is None else float(metrics["test/mse"])


if __name__ == "__main__":
    main()
