"""The V-JEPA 2 path end to end at toy size: Kinetics-style videos (one corrupt) → latent cache →
a flow head trained on the cache → latent-space evaluation beside copy-last and V-JEPA 2's own
predictor. The backbone is the tiny random-weight config; the point is the plumbing and its
guarantees (frozen backbone, counted bad videos, metrics and pictures), not the numbers."""

from __future__ import annotations

import csv
import json

import torch

import futurelat.main as main_module
from futurelat.cache import run_cache
from futurelat.datasets.toy_videos import make_toy_kinetics
from futurelat.main import run

from composing import TINY_COMMON, compose_config


def test_videos_to_cache_to_trained_flow_head_to_latent_metrics(tmp_path, monkeypatch):
    make_toy_kinetics(tmp_path / "videos", num_train=6, num_test=3, frames=16, corrupt=1)
    cfg = compose_config([o for o in TINY_COMMON if not o.startswith("dataset.")] + [
        "+experiment=vjepa2_flow_tiny", f"dataset.source.root={tmp_path / 'videos'}",
        f"dataset.dir={tmp_path / 'cache'}", "cache.progress=false", "trainer.head.max_steps=3",
        "head.params.sampling.steps=1"])

    summaries = run_cache(cfg)
    assert (summaries["train"].written, summaries["train"].failed) == (6, 1)  # the corrupt clip is listed
    with open(tmp_path / "cache" / "train_failed.csv") as f:
        failed = list(csv.DictReader(f))
    assert len(failed) == 1 and failed[0]["video"].endswith(".mp4")
    assert summaries["test"].written == 3

    built = {}
    original_build = main_module.build_model

    def build_and_remember(config):
        built["model"] = original_build(config)
        built["backbone"] = {k: v.clone() for k, v in built["model"].backbone.state_dict().items()}
        return built["model"]

    monkeypatch.setattr(main_module, "build_model", build_and_remember)
    metrics = run(cfg, tmp_path / "run")

    backbone = built["model"].backbone  # frozen: untouched by the head's training, never in its optimizer
    assert all(torch.equal(v, built["backbone"][k]) for k, v in backbone.state_dict().items())
    assert not any(p.requires_grad or p.grad is not None for p in backbone.parameters())
    for scorer in ("test", "test/copy_last", "test/vjepa2_predictor"):
        for metric in ("l1", "mse", "cosine"):
            assert torch.isfinite(torch.tensor(metrics[f"{scorer}/{metric}"]))
    assert metrics["test/num_sequences"] == 3 and metrics["test/skipped_videos"] == 0  # the corrupt clip is in train
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test/l1"] == metrics["test/l1"]
    assert (tmp_path / "run" / "latent_predictions.png").stat().st_size > 0
    assert not (tmp_path / "run" / "checkpoints" / "backbone_final.pt").exists()  # no stage 1 for a cache
