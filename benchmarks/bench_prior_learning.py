"""How fast a prior learns per second of CPU: train fresh heads for a fixed wall time; prints figures, asserts nothing.

    python benchmarks/bench_prior_learning.py RUN_DIR --seconds 240                      # the run's head settings
    python benchmarks/bench_prior_learning.py RUN_DIR --seconds 240 --batch 4 --lr 6e-3 \\
        --set d_model=48 num_layers=3                                                      # a variant
    python benchmarks/bench_prior_learning.py RUN_DIR --reference                         # the run's own head
    python benchmarks/bench_prior_learning.py FLOW_RUN --steps 300 --set prediction=data   # a flow head, 300 steps

``RUN_DIR`` is a finished ``python -m futurelat.main`` run with a discrete tokenizer (the default job's
VQ-VAE) and a head: a code prior, or a head over continuous latents such as ``flow_dit`` (it then trains
on the codes' codebook vectors). For another head on the same tokenizer, a one-step head-only run
makes such a directory: ``python -m futurelat.main +experiment=mmnist_vqvae_flow stages=[head]
backbone.checkpoint=RUN_DIR/checkpoints/backbone_final.pt trainer.head.max_steps=1
trainer.head.warmup_steps=0``. Its frozen tokenizer encodes ``--train-sequences`` training clips once
(the codes are cached in ``--cache``, keyed by the run, so every variant sees the same clips without
re-encoding them) and the first ``--test-sequences`` test clips. A fresh head, built from the run's
``head`` config with the ``--set`` overrides, then trains on random clips of that pool for ``--seconds``
of wall time (or ``--steps`` steps): AdamW with the run's ``trainer.weight_decay`` on matrices (the trainer's groups), gradient
clipping at 1, linear warm-up over 20 steps and cosine decay to 0.1 x
``--lr`` over the steps the first 20 say fit in the time (the trainer's schedule, sized by time instead
of steps; with ``--steps``, over those steps). Printed, one JSON line per run (appended to ``--out`` too):

- code priors, ``future_ce``: the teacher-forced cross-entropy (nats per code) of the test clips' future
  frames ``Tc .. T-1`` given the true past, in eval mode: how well the prior knows the next frame;
- other heads, ``test_loss``: the head's own training loss on the test clips, in eval mode, with fixed
  noise (seed 0), beside ``test_loss_other_context``, the same with each clip's context frames swapped
  for the next clip's: equal figures mean the head ignores its context;
- one rollout of each test context with the head's sampling settings (a sampled future; the
  mean-field rollout for a prior whose config turns it on, as ``configs/head/mamba.yaml`` does:
  ``--set sampling.mean_field=false`` samples), decoded: MSE and SSIM
  (:mod:`futurelat.evaluation.metrics`), and the MSE at future steps 1, 3, 5 and 10;
- ``steps``, seconds per step, and the rollout's seconds.

``--reference`` scores the run's own trained head the same way, without training. ``--png`` saves the
rolled-out futures of the first 8 test clips. Equal wall time, not equal steps, is the comparison: the
question is which prior to train in a budget (docs/ablations.md#learning-per-second-of-the-code-prior).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from futurelat.datasets import build_dataset
from futurelat.evaluation.metrics import MetricAccumulator, frame_metrics
from futurelat.evaluation.visualize import save_prediction_grid
from futurelat.models.base import Latents
from futurelat.models.heads.sampling import code_cross_entropy
from futurelat.models.latent_video_model import build_model
from futurelat.predict import load_run
from futurelat.training.optim import param_groups, warmup_cosine
from futurelat.utils.cpu_memory import reuse_freed_memory

WARMUP_STEPS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished run directory (discrete tokenizer + a head)")
    p.add_argument("--seconds", type=float, default=240.0, help="training wall time per head (default 240)")
    p.add_argument("--steps", type=int, default=None, help="train this many steps instead of --seconds")
    p.add_argument("--batch", type=int, default=None, help="clips per step (default: the run's trainer.head.batch_size)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the run's trainer.head.lr)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="head.params overrides, YAML values (e.g. d_model=48 sampling.temperature=0.9)")
    p.add_argument("--train-sequences", type=int, default=4000, help="training clips encoded once (default 4000)")
    p.add_argument("--test-sequences", type=int, default=200, help="test clips scored (default 200)")
    p.add_argument("--cache", default="outputs/bench_prior_learning", help="where the encoded clips are kept")
    p.add_argument("--reference", action="store_true", help="score the run's own head; no training")
    p.add_argument("--png", default=None, help="save the rolled-out futures of the first 8 test clips here")
    p.add_argument("--out", default=None, help="append the JSON line to this file too")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


@torch.no_grad()
def encoded_codes(model, cfg, split: str, count: int, cache: Path, run: Path) -> torch.Tensor:
    """Codes ``(count, T, N)`` (int64) of the first ``count`` clips of ``split``, encoded once and cached."""
    key = hashlib.sha1(f"{run.resolve()}|{(run / 'config.yaml').stat().st_mtime}".encode()).hexdigest()[:12]
    path = cache / f"{key}_{split}_{count}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True).long()
    data = build_dataset(cfg.dataset, split)
    start, codes = time.perf_counter(), []
    for i in range(0, count, 50):
        frames = torch.stack([data[j]["frames"] for j in range(i, min(count, i + 50))])
        codes.append(model.encode(frames).codes)
    codes = torch.cat(codes)
    print(f"encoded {count} {split} clips in {time.perf_counter() - start:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(codes.to(torch.int16), path)
    return codes


def future_cross_entropy(head, codes: torch.Tensor, context: int) -> float:
    """Teacher-forced nats per code of frames ``context ..`` of ``codes`` ``(B, T, N)``, in eval mode."""
    head.eval()
    with torch.no_grad():
        logits = head.objective.logits(head.trunk, codes)[:, context - 1:]  # row t predicts frame t + 1
        return code_cross_entropy(logits, codes[:, context:])["loss"].item()


def clip_latents(model, codes: torch.Tensor, head) -> Latents:
    """The head's input for clips of ``codes`` ``(B, T, N)``: codes alone for a code prior, else their codebook vectors too."""
    if head.needs_codes:
        return Latents(latents=torch.empty(*codes.shape, 0), codes=codes)
    return Latents(latents=model.backbone.embed_codes(codes), codes=codes)


def test_losses(model, head, codes: torch.Tensor, context: int) -> dict[str, float]:
    """A continuous head's eval-mode loss on ``codes`` with their own context and with the next clip's, same noise."""
    head.eval()
    other = torch.cat([codes[:, :context].roll(1, 0), codes[:, context:]], dim=1)
    out = {}
    with torch.no_grad():
        for key, clips in (("test_loss", codes), ("test_loss_other_context", other)):
            torch.manual_seed(0)
            losses = [head(clip_latents(model, clips[i:i + 50], head))["loss"].item() for i in range(0, len(clips), 50)]
            out[key] = round(sum(losses) / len(losses), 4)
    return out


def train(model, head, codes: torch.Tensor, seconds: float, steps: int | None, batch: int, lr: float,
          weight_decay: float, seed: int) -> tuple[int, float]:
    """Train ``head`` on random clips of ``codes`` for ``seconds`` (or ``steps`` steps); returns (steps, seconds)."""
    head.train()
    opt = torch.optim.AdamW(param_groups(head, weight_decay), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start, step, total = time.perf_counter(), 0, steps
    while (step < steps) if steps else ((elapsed := time.perf_counter() - start) < seconds):
        if step == WARMUP_STEPS and not steps:
            total = max(WARMUP_STEPS + 1, int(seconds / (elapsed / WARMUP_STEPS)))
        scale = warmup_cosine(step, max_steps=total or WARMUP_STEPS, warmup_steps=WARMUP_STEPS, min_lr_ratio=0.1)
        for group in opt.param_groups:
            group["lr"] = lr * scale
        clips = codes[torch.randint(0, len(codes), (batch,), generator=gen)]
        loss = head(clip_latents(model, clips, head))["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"  step {step}  {time.perf_counter() - start:.0f} s  loss {loss.item():.3f}", flush=True)
    return step, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reuse_freed_memory()
    torch.manual_seed(args.seed)
    run = Path(args.run)
    cfg, model = load_run(run)
    tc, tf = int(cfg.dataset.context_frames), int(cfg.dataset.future_frames)
    cache = Path(args.cache)
    test_codes = encoded_codes(model, cfg, "test", args.test_sequences, cache, run)
    result: dict = {"run": str(run), "budget": f"{args.steps} steps" if args.steps else f"{args.seconds} s"}
    if args.reference:
        head = model.head
        result.update(variant="the run's head")
    else:
        train_codes = encoded_codes(model, cfg, "train", args.train_sequences, cache, run)
        overrides = OmegaConf.from_dotlist(args.set)  # unknown keys: build_model refuses them, naming them
        cfg.head.params = OmegaConf.merge(cfg.head.params, overrides)
        fresh = build_model(cfg)  # the head reads its own backbone (codebook, pixel decoder): give that one
        fresh.backbone.load_state_dict(model.backbone.state_dict())  # the run's trained weights
        fresh.backbone.eval().requires_grad_(False)
        head = fresh.head
        batch = args.batch or int(cfg.trainer.head.batch_size)
        lr = args.lr or float(cfg.trainer.head.lr)
        steps, seconds = train(model, head, train_codes, args.seconds, args.steps, batch, lr,
                               float(cfg.trainer.weight_decay), args.seed)
        result.update(variant={"batch": batch, "lr": lr, **OmegaConf.to_container(overrides)}, steps=steps,
                      s_per_step=round(seconds / steps, 3))
    if head.needs_codes:
        result["future_ce"] = round(future_cross_entropy(head, test_codes, tc), 4)
    else:
        result.update(test_losses(model, head, test_codes, tc))
    model.head = head.eval()
    test = build_dataset(cfg.dataset, "test")
    frames = torch.stack([test[i]["frames"] for i in range(args.test_sequences)])
    context, target = frames[:, :tc], frames[:, tc:]
    start = time.perf_counter()
    with torch.no_grad():
        sample = torch.cat([model.rollout(context[i:i + 100], tf).clamp(0, 1) for i in range(0, len(frames), 100)])
    acc = MetricAccumulator()
    acc.update(frame_metrics(sample, target))
    m = acc.compute("")
    result.update(mse=round(m["mse"], 1), ssim=round(m["ssim"], 4),
                  mse_steps={k: round(m[f"mse/step_{k:02d}"]) for k in (1, 3, 5, 10) if k <= tf},
                  rollout_s=round(time.perf_counter() - start, 1))
    line = json.dumps(result)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    if args.png:
        save_prediction_grid(context[:8], target[:8], sample[:8], args.png)
        print("saved", args.png)


if __name__ == "__main__":
    main()
