"""Throughput of the ALiBi transformer prior over codes in raster (token) order; prints figures, asserts nothing.

The head is ``transformer`` with ``objective=autoregressive ordering=token position=alibi``
(futurelat/models/heads/transformer.py), built for clips of ``--frames`` latent frames.

1. Training: tokens per second of one forward + backward (no optimizer) over random clips
   ``(B, T, N)``, per attention backend (``head.params.backend``: ``sdpa``, and ``flex`` on CUDA).
2. Cached sampling: the context (``--context-frames`` frames) read once, then one KV-cached step per
   code, greedy, to the end of a training clip: tokens per second.
3. Trained vs sampled length: the same head samples ``2 x --frames`` future frames after the context,
   past the length it was built for; seconds per frame inside and beyond the trained length, and a
   check that the drawn codes are the argmax of one no-cache pass over the whole sampled sequence.

    python benchmarks/bench_alibi_prior.py --threads 1            # ~15-40 s on a busy 2-core CPU
    python benchmarks/bench_alibi_prior.py --device cuda --batch 16 --grid 16 --frames 8
"""

from __future__ import annotations

import argparse
import time

import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.transformer import TransformerHead

from timing import sync, time_train_steps


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--grid", type=int, default=8, help="codes per frame side (N = grid**2)")
    p.add_argument("--codebook-size", type=int, default=512)
    p.add_argument("--frames", type=int, default=5, help="T: latent frames of a training clip (the head's num_frames)")
    p.add_argument("--context-frames", type=int, default=2, help="context latent frames of a rollout")
    p.add_argument("--batch", type=int, default=4, help="training batch")
    p.add_argument("--sample-batch", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=3, help="timed steps (after 1 warm-up step)")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--backends", nargs="*", default=None, choices=["sdpa", "flex"],
                   help="training backends to time (default: sdpa on CPU, sdpa and flex on CUDA)")
    return p.parse_args()


def build(args: argparse.Namespace, device: torch.device, backend: str) -> TransformerHead:
    torch.manual_seed(0)
    spec = LatentSpec(latent_dim=1, grid=(args.grid, args.grid), codebook_size=args.codebook_size)
    head = TransformerHead(spec, args.frames, context_latents=args.context_frames, objective="autoregressive",
                           ordering="token", position="alibi", d_model=args.d_model, num_layers=args.num_layers,
                           num_heads=args.num_heads, backend=backend, sampling={"greedy": True})
    torch.nn.init.normal_(head.objective.to_out.weight, std=0.02)  # not the zero init: logits depend on the input
    return head.to(device)


def random_codes(args: argparse.Namespace, batch: int, frames: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, args.codebook_size, (batch, frames, args.grid ** 2), generator=g).to(device)


def bench_train(args: argparse.Namespace, device: torch.device, backend: str) -> None:
    head = build(args, device, backend)
    codes = random_codes(args, args.batch, args.frames, device)
    z = Latents(latents=torch.empty(*codes.shape, 0, device=device), codes=codes)
    step = time_train_steps(head, z, args.train_steps, device, lr=None)
    params = sum(p.numel() for p in head.parameters())
    print(f"train   backend={backend:4s}  params={params / 1e6:.2f}M  batch={args.batch}  T={args.frames}  "
          f"N={args.grid ** 2}  L={codes[0].numel()}:  {step:.3f} s per fwd+bwd  {codes.numel() / step:,.0f} tokens/s",
          flush=True)


@torch.no_grad()
def sample(head: TransformerHead, context: torch.Tensor, frames: int, device: torch.device) -> tuple[torch.Tensor, list[float]]:
    """Greedy codes ``(B, frames, N)`` after ``context`` ``(B, Tc, N)`` and the seconds each frame took
    (the first includes the prefill)."""
    n = context.shape[2]
    sync(device)
    start = time.perf_counter()
    logits, caches = head.prefill(context)
    drawn, seconds = [], []
    for i in range(frames * n):
        drawn.append(logits.argmax(-1))  # (B, 1)
        if i + 1 < frames * n:
            logits, caches = head.step(drawn[-1], caches)
        if (i + 1) % n == 0:
            sync(device)
            seconds.append(time.perf_counter() - start)
    per_frame = [b - a for a, b in zip([0.0] + seconds[:-1], seconds)]
    return torch.cat(drawn, 1).view(context.shape[0], frames, n), per_frame


def bench_sample(args: argparse.Namespace, device: torch.device) -> None:
    head = build(args, device, "auto").eval()
    n, tc, t = args.grid ** 2, args.context_frames, args.frames
    context = random_codes(args, args.sample_batch, tc, device)
    sample(head, context, 1, device)  # warm-up

    # 2. to the end of a training clip
    codes, per_frame = sample(head, context, t - tc, device)
    tokens = args.sample_batch * (t - tc) * n
    print(f"sample  cached, {tc} context + {t - tc} new frames (the trained clip), batch {args.sample_batch}: "
          f"{sum(per_frame):.2f} s  {tokens / sum(per_frame):,.0f} tokens/s  "
          f"{1e3 * sum(per_frame) / tokens * args.sample_batch:.2f} ms per step", flush=True)

    # 3. past it: 2 x T future frames
    new = 2 * t
    codes, per_frame = sample(head, context, new, device)
    inside, beyond = per_frame[:t - tc], per_frame[t - tc:]
    with torch.no_grad():
        logits = head.logits(torch.cat([context, codes], 1))  # (B, tc + new, N, K): one pass, no cache
    agree = (logits[:, tc:].argmax(-1) == codes).float().mean().item()
    in_range = bool(((codes >= 0) & (codes < args.codebook_size)).all())
    print(f"length  trained on T={t} latent frames ({t * n} tokens); sampled {new} future frames after {tc} "
          f"({(tc + new) * n} tokens, {(tc + new) / t:.1f}x the clip): {sum(inside) / len(inside):.2f} s/frame "
          f"inside the trained length, {sum(beyond) / len(beyond):.2f} s/frame beyond it (last frame "
          f"{per_frame[-1]:.2f} s); codes in range: {in_range}; greedy codes = argmax of a no-cache pass: "
          f"{agree:.1%}", flush=True)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends = args.backends if args.backends is not None else (["sdpa", "flex"] if device.type == "cuda" else ["sdpa"])
    print(f"device={device}  torch {torch.__version__}  threads={torch.get_num_threads()}  d_model={args.d_model}  "
          f"layers={args.num_layers}  heads={args.num_heads}  K={args.codebook_size}", flush=True)
    for backend in backends:
        bench_train(args, device, backend)
    bench_sample(args, device)


if __name__ == "__main__":
    main()
