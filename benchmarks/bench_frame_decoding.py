"""Sampling cost of whole-frame (MaskGIT) decoding and mean-field rollouts against the independent draw; prints figures.

    python benchmarks/bench_frame_decoding.py                      # the default job's Mamba prior
    python benchmarks/bench_frame_decoding.py --head transformer   # mmnist_vqvae_transformer's prior, as a code prior
    python benchmarks/bench_frame_decoding.py --steps 1 4 8 --rollouts 100 --threads 2

The head of the composed config (``configs/head/<head>.yaml`` on the default job's VQ-VAE: 16x16
codes per frame, 128 codes; the default job's sizes), with random weights (speed does not depend on
them), rolls ``--rollouts`` contexts of ``--context`` latent frames forward by ``--future`` frames in
batches of ``--batch``, once with ``frame_decoding=independent`` (one trunk pass per frame) and
once as the mean-field rollout (``sampling.mean_field``: no draw, the expected code embedding fed
back), and once per ``--steps`` value with ``frame_decoding=maskgit`` (``steps`` peeks plus one step
per frame). Printed: seconds per 100 rollouts (the median of ``--repeats`` timed runs after one warm-up)
and the cost relative to the independent draw.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from composing import compose_config  # noqa: E402  (the configs as the CLI composes them)

from futurelat.models.base import Latents  # noqa: E402
from futurelat.models.latent_video_model import build_model  # noqa: E402
from timing import sync  # noqa: E402

HEAD_OVERRIDES = {"mamba": [], "transformer": ["head=transformer", "head.params.objective=autoregressive"]}


def _seconds(model, context: Latents, future: int, repeats: int, device: torch.device) -> float:
    times = []
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            model.head.rollout(context, future)
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--head", default="mamba", choices=sorted(HEAD_OVERRIDES))
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4, 8], help="maskgit passes per frame")
    p.add_argument("--rollouts", type=int, default=100)
    p.add_argument("--batch", type=int, default=100, help="rollouts per call (the evaluator's eval.batch_size)")
    p.add_argument("--context", type=int, default=10, help="context latent frames")
    p.add_argument("--future", type=int, default=10, help="future latent frames")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    variants = [("independent", ["head.params.frame_decoding=independent", "head.params.sampling.mean_field=false"]),
                ("mean field", ["head.params.frame_decoding=independent", "head.params.sampling.mean_field=true"])]
    variants += [(f"maskgit, {k} pass{'es' if k > 1 else ''}",
                  ["head.params.frame_decoding=maskgit", "head.params.sampling.mean_field=false",
                   "head.params.static_keep=1",
                   f"head.params.sampling.steps={k}"]) for k in args.steps]
    for name, overrides in variants:
        cfg = compose_config([*HEAD_OVERRIDES[args.head], *overrides])
        torch.manual_seed(0)
        model = build_model(cfg).to(device).eval()
        spec = model.spec
        codes = torch.randint(0, spec.codebook_size, (args.batch, args.context, spec.tokens_per_frame), device=device)
        context = Latents(torch.zeros(*codes.shape, spec.latent_dim, device=device), codes)
        seconds = _seconds(model, context, args.future, args.repeats, device) * args.rollouts / args.batch
        rows.append((name, seconds))
    print(f"{args.head} prior, {args.context} -> {args.future} latent frames of {spec.tokens_per_frame} codes, "
          f"batch {args.batch}, {torch.get_num_threads()} threads, {args.device}")
    print(f"{'decoding':24s} {'s / 100 rollouts':>18s} {'x independent':>14s}")
    for name, seconds in rows:
        print(f"{name:24s} {seconds * 100 / args.rollouts:18.2f} {seconds / rows[0][1]:14.2f}")


if __name__ == "__main__":
    main()
