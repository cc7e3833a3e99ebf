"""A backbone trained with and without ``backbone.gan``: reconstruction PSNR and sharpness; prints figures, asserts nothing.

Each variant trains stage 1 only (the backbone, through the one ``Trainer``) from the same seed on the
composed config (default: the default job's Moving MNIST and VQ-VAE), then reconstructs the first
``--sequences`` test clips (every frame, encode → decode) and reports the mean PSNR (dB) and the
sharpness ratio (:func:`futurelat.evaluation.metrics.sharpness_ratio`: high-frequency energy of the
reconstruction over the truth's; 1 = as sharp as the truth, < 1 blurrier), with the last logged
discriminator values. Variants: ``off`` (the plain autoencoder) and ``gan`` (``backbone.gan.enabled=true``
plus ``--gan``); ``--adaptive`` adds ``gan_adaptive`` (the same with ``adaptive_weight=true``).

    python benchmarks/bench_gan.py                                   # the default job's sizes (slow on a CPU)
    python benchmarks/bench_gan.py --steps 300 --overrides trainer.backbone.batch_size=16 \\
        backbone.params.hidden_channels=16 --gan backbone.gan.start_step=150 backbone.gan.channels=16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from futurelat.config import check_config, register_configs
from futurelat.datasets import build_dataset
from futurelat.evaluation.metrics import frame_psnr, sharpness_ratio
from futurelat.models.gan.build import build_gan
from futurelat.models.latent_video_model import build_model
from futurelat.training.distributed import DistInfo
from futurelat.training.trainer import Trainer
from futurelat.utils.seeding import seed_everything

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
LOGGED = ("recon_l1", "psnr", "d_loss", "g_adv", "gan_weight", "logits_real", "logits_fake", "lecam")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="trainer.backbone.max_steps (default: the config's)")
    p.add_argument("--sequences", type=int, default=64, help="test clips reconstructed and scored")
    p.add_argument("--overrides", nargs="*", default=[], help="Hydra overrides for every variant")
    p.add_argument("--gan", nargs="*", default=[], help="Hydra overrides of the GAN variants")
    p.add_argument("--adaptive", action="store_true", help="also run the GAN with the adaptive weight")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def compose_variant(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return check_config(compose("main", overrides=["logger=none", "trainer.device=cpu", "trainer.progress=false",
                                                       *overrides]))


@torch.no_grad()
def score(backbone, test_set, sequences: int) -> dict[str, float]:
    """Reconstruction PSNR (dB, per frame, mean) and sharpness ratio on the first ``sequences`` test clips."""
    backbone.eval()
    frames = torch.stack([test_set[i]["frames"] for i in range(min(sequences, len(test_set)))])
    recon = torch.cat([backbone.decode(backbone.encode(chunk)).clamp(0, 1) for chunk in frames.split(16)])
    return {"psnr": float(frame_psnr(recon, frames).mean()), "sharpness": sharpness_ratio(recon, frames)}


def run_variant(name: str, overrides: list[str], args: argparse.Namespace, out: Path) -> dict[str, float]:
    cfg = compose_variant(overrides)
    seed_everything(int(cfg.seed))
    model = build_model(cfg)
    train_set, test_set = build_dataset(cfg.dataset, "train"), build_dataset(cfg.dataset, "test")
    k = int(cfg.backbone.frames_per_clip)
    gan = build_gan(cfg.backbone.gan, in_channels=int(cfg.dataset.channels))
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_main=True)
    records: list[tuple[int, dict[str, float]]] = []
    logger = type("L", (), {"log_metrics": lambda self, m, step: records.append((step, dict(m)))})()
    start = time.perf_counter()
    prepare = lambda batch: {"frames": model.backbone.sample_training_frames(batch["frames"], k)}  # noqa: E731
    Trainer(model.backbone, train_set, cfg.trainer, cfg.trainer.backbone, out / name, name="backbone",
            prepare=prepare, logger=logger, dist=dist, gan=gan).fit()
    result = {"train_s": time.perf_counter() - start, **score(model.backbone, test_set, args.sequences)}
    last = [m for _, m in records if "backbone/recon_l1" in m][-1]
    result.update({f"last_{key}": last[f"backbone/{key}"] for key in LOGGED if f"backbone/{key}" in last})
    print(name, json.dumps({k: round(v, 4) for k, v in result.items()}), flush=True)
    return result


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    common = [*args.overrides, *([f"trainer.backbone.max_steps={args.steps}"] if args.steps else [])]
    variants = {"off": common, "gan": [*common, "backbone.gan.enabled=true", *args.gan]}
    if args.adaptive:
        variants["gan_adaptive"] = [*variants["gan"], "backbone.gan.adaptive_weight=true"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: run_variant(name, overrides, args, Path(tmp)) for name, overrides in variants.items()}
    print(f"{'variant':<14}{'PSNR dB':>9}{'sharpness':>11}{'train s':>9}")
    for name, r in results.items():
        print(f"{name:<14}{r['psnr']:>9.2f}{r['sharpness']:>11.3f}{r['train_s']:>9.0f}")
    return results


if __name__ == "__main__":
    main()
