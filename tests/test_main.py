"""The whole ``python -m futurelat.main`` as a user runs it, shrunk to seconds."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from composing import ROOT, TINY, tiny_config
from running import run_main


def test_main_job_end_to_end(tiny_run, tmp_path):
    run_dir = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/mse", "test/mae", "test/ssim", "test/psnr", "reconstruction/psnr",
                "test/copy_last/mse", "test/zeros/ssim", "test/mse/step_01",
                "test/raw/mse", "test/frame_gain/step_01"):  # debug/tiny fits the frame gains on 2 training clips
        assert math.isfinite(metrics[key]), key
    assert all(0 <= metrics[f"test/frame_gain/step_{k:02d}"] <= 1 for k in range(1, 11))
    gif = Image.open(run_dir / "predictions.gif")
    assert gif.n_frames == 20
    assert (run_dir / "predictions.png").exists()
    assert (run_dir / "config.yaml").exists()
    for stage in ("backbone", "head"):
        assert (run_dir / "checkpoints" / f"{stage}_final.pt").exists()
    assert (run_dir / "train_log.jsonl").read_text().strip()
    with Image.open(run_dir / "curves.png") as img:  # the training log drawn, one row per stage
        assert img.text["Description"] == "backbone: loss, learning rate, codebook; head: loss, learning rate"

    # The stages also run alone, from the checkpoints of the first run.
    ckpt = run_dir / "checkpoints"
    again = tmp_path / "eval_only"
    result = run_main([*TINY, f"hydra.run.dir={again}", "stages=[evaluate]",
                       f"backbone.checkpoint={ckpt / 'backbone_final.pt'}",
                       f"head.checkpoint={ckpt / 'head_final.pt'}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((again / "metrics.json").read_text())["test/mse"] == pytest.approx(metrics["test/mse"])

    # An eval-only run whose model config differs from the one stored in the head checkpoint stops before scoring.
    changed = tmp_path / "changed"
    result = run_main([*TINY, f"hydra.run.dir={changed}", "stages=[evaluate]", "head.params.mlp_ratio=3.0",
                       f"backbone.checkpoint={ckpt / 'backbone_final.pt'}",
                       f"head.checkpoint={ckpt / 'head_final.pt'}"], cwd=ROOT)
    assert result.returncode != 0
    assert "head.params.mlp_ratio: checkpoint 2.0, this run 3.0" in result.stderr, result.stderr[-3000:]
    assert "head.allow_config_mismatch=true" in result.stderr and not (changed / "metrics.json").exists()


def test_print_config_and_bad_override(tmp_path):
    result = run_main(["--cfg", "job"], cwd=ROOT)
    assert result.returncode == 0 and "backbone:" in result.stdout and "name: vqvae" in result.stdout
    result = run_main(["head=nope", f"hydra.run.dir={tmp_path}"], cwd=ROOT)
    assert result.returncode != 0 and "nope" in result.stderr and "mamba" in result.stderr


def test_stage_without_checkpoint_is_refused_before_training(tmp_path):
    result = run_main([*TINY, f"hydra.run.dir={tmp_path}", "stages=[head]"], cwd=ROOT)
    assert result.returncode != 0 and "backbone.checkpoint" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_multirun_sweeps_a_key(tmp_path):
    result = run_main(["-m", *TINY, "head.params.d_model=16,32", f"hydra.sweep.dir={tmp_path}"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]
    assert all((tmp_path / d / "metrics.json").exists() for d in ("0", "1"))


def test_run_sets_the_process_up_on_trainer_device(tmp_path, monkeypatch):
    """One device decision per process: main hands trainer.device to init_distributed (which picks nccl
    only for CUDA), and the trainers, the frozen backbone and the evaluation all use its answer."""
    import futurelat.main as entry
    from composing import tiny_config

    asked = []

    def fake_init(device="auto", timeout_s=None):
        asked.append(device)
        raise RuntimeError("stop here")

    monkeypatch.setattr(entry, "init_distributed", fake_init)
    with pytest.raises(RuntimeError, match="stop here"):
        entry.run(tiny_config(["trainer.device=cpu"]), tmp_path)
    assert asked == ["cpu"]


def test_optimized_metric_is_the_runs_main_error_unless_named():
    from futurelat.main import optimized_value

    pixels = {"test/mse": 90.0, "test/mse/step_01": 80.0, "test/ssim": 0.7}
    latents = {"test/l1": 0.15, "test/mse": 0.05, "test/cosine": 0.9}
    assert optimized_value(pixels, None) == 90.0 and optimized_value(latents, None) == 0.15
    assert optimized_value(latents, "test/cosine") == 0.9
    with pytest.raises(KeyError, match=r"optimized_metric='test/l1'.*\['test/mse', 'test/ssim'\]"):
        optimized_value(pixels, "test/l1")


@pytest.mark.parametrize("stages, message", [
    ("[tokenizer,predictor,evaluate]", r"renamed: tokenizer -> backbone, predictor -> head"),
    ("[backbone,train]", r"unknown stage\(s\) \['train'\]"),
    ("[head,evaluate]", r"stages without `backbone` need a trained backbone: set backbone.checkpoint"),
    ("[evaluate]", r"stages without `backbone`"),
])
def test_stages_are_checked_before_anything_runs(stages, message):
    from futurelat.main import _check_stages

    with pytest.raises(ValueError, match=message):
        _check_stages(tiny_config([f"stages={stages}"]))
    assert _check_stages(tiny_config(["stages=[backbone,head]"])) == ["backbone", "head"]


def test_evaluation_uses_the_heads_ema_weights_and_raw_ones_on_request(tmp_path):
    """``trainer.ema.decay`` set: the run scores its head's EMA weights (which an eval-only run loads
    from the checkpoint by default: ``tests/training/test_ema.py``); ``eval.weights=raw`` scores the
    trained weights, which differ."""
    import futurelat.main as entry

    # Sampled futures: a 2-step prior's mean-field rollout snaps both weight sets to the same codes.
    ema = ["trainer.ema.decay=0.5", "logger=none", "eval.max_sequences=16", "trainer.progress=false",
           "head.params.sampling.mean_field=false"]
    first = entry.run(tiny_config(ema), tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints"
    raw = entry.run(tiny_config([*ema, "stages=[evaluate]", "eval.weights=raw",
                                 f"backbone.checkpoint={ckpt / 'backbone_final.pt'}",
                                 f"head.checkpoint={ckpt / 'head_final.pt'}"]), tmp_path / "raw")
    assert raw["reconstruction/psnr"] == first["reconstruction/psnr"]  # the same backbone (it kept no EMA)
    assert raw["test/mse"] != first["test/mse"]
    with pytest.raises(ValueError, match="eval.weights=ema, but trainer.ema.decay is null"):
        entry.run(tiny_config(["eval.weights=ema", "trainer.ema.decay=null"]), tmp_path / "no_ema")
    with pytest.raises(ValueError, match=r"eval.frame_gain_sequences must be an int >= 0 \(0 = off\); got -1"):
        entry.run(tiny_config(["eval.frame_gain_sequences=-1"]), tmp_path / "bad_gain")
    assert not (tmp_path / "bad_gain" / "checkpoints").exists()  # refused before training
