"""Throughput of the ``mamba`` head (futurelat/models/heads/mamba.py); prints figures, asserts nothing.

1. Training: codes predicted per second for one fwd + bwd + AdamW step of each ordering
   (random codes ``(B, T, N)``; the default sizes are the CPU preset of configs/head/mamba.yaml).
2. Sampling: the token ordering after a context of ``--context-frames x N`` codes (2,560 by
   default), drawing ``--new-tokens`` codes either with the recurrent state (context read once,
   then one constant-cost step per code) or by re-running the parallel scan over the whole prefix
   for every code; the same for the frame ordering, one frame per step.

    python benchmarks/bench_mamba_prior.py                        # ~1-2 min on 2 CPU cores
    python benchmarks/bench_mamba_prior.py --device cuda --frame-batch 64 --token-batch 16
"""

from __future__ import annotations

import argparse
import time

import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.mamba import MambaHead

from timing import sync, time_train_steps


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--grid", type=int, default=16, help="codes per frame side (N = grid**2)")
    p.add_argument("--codebook-size", type=int, default=512)
    p.add_argument("--frames", type=int, default=20, help="T of a training clip")
    p.add_argument("--frame-batch", type=int, default=8, help="training batch, frame ordering")
    p.add_argument("--token-batch", type=int, default=1, help="training batch, token ordering")
    p.add_argument("--train-steps", type=int, default=3, help="timed steps (after 1 warm-up step)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=2, help="frame ordering only")
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "mamba_ssm"])
    p.add_argument("--context-frames", type=int, default=10)
    p.add_argument("--new-tokens", type=int, default=256, help="codes drawn by the token-ordering sampler")
    p.add_argument("--new-frames", type=int, default=10, help="frames drawn by the frame-ordering sampler")
    p.add_argument("--sample-batch", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["train-frame", "train-token", "sample-frame", "sample-token"])
    return p.parse_args()



def build(args: argparse.Namespace, ordering: str, device: torch.device) -> MambaHead:
    torch.manual_seed(0)
    spec = LatentSpec(latent_dim=1, grid=(args.grid, args.grid), codebook_size=args.codebook_size)
    head = MambaHead(spec, args.frames, ordering=ordering, d_model=args.d_model, num_layers=args.num_layers,
                     d_state=args.d_state, head_dim=args.head_dim, patch_size=args.patch_size,
                     chunk_size=args.chunk_size, backend=args.backend)
    return head.to(device)


def random_codes(args: argparse.Namespace, batch: int, frames: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, args.codebook_size, (batch, frames, args.grid ** 2), generator=g).to(device)


def bench_train(args: argparse.Namespace, ordering: str, batch: int, device: torch.device) -> None:
    head = build(args, ordering, device)
    codes = random_codes(args, batch, args.frames, device)
    z = Latents(latents=torch.empty(*codes.shape, 0, device=device), codes=codes)
    step = time_train_steps(head, z, args.train_steps, device, lr=1e-3)
    params = sum(p.numel() for p in head.parameters())
    print(f"train  {ordering:5s}  backend={head.backend}  params={params / 1e6:.2f}M  batch={batch}  "
          f"T={args.frames}  N={args.grid ** 2}  K={args.codebook_size}:  {step:.2f} s/step  "
          f"{codes.numel() / step:,.0f} codes/s", flush=True)


@torch.no_grad()
def bench_sample(args: argparse.Namespace, ordering: str, device: torch.device) -> None:
    head = build(args, ordering, device).eval()
    n = args.grid ** 2
    new = args.new_tokens if ordering == "token" else args.new_frames
    unit = 1 if ordering == "token" else n  # codes per step
    context = random_codes(args, args.sample_batch, args.context_frames, device)

    def recurrent() -> torch.Tensor:
        logits, state = head.prefill(context)
        drawn = []
        for i in range(new):
            drawn.append(logits.argmax(-1))
            if i + 1 < new:
                logits, state = head.step(drawn[-1], state)
        return torch.cat(drawn, 1)

    def rerun_prefix() -> torch.Tensor:
        prefix = context.flatten(1) if ordering == "token" else context
        drawn = []
        for _ in range(new):
            logits, _ = head.prefill(prefix)  # the whole prefix through the parallel scan again
            drawn.append(logits.argmax(-1))
            nxt = drawn[-1] if ordering == "token" else drawn[-1][:, None]
            prefix = torch.cat([prefix, nxt], 1)
        return torch.cat(drawn, 1)

    results = {}
    for name, fn in (("recurrent state", recurrent), ("re-run prefix", rerun_prefix)):
        sync(device)
        start = time.perf_counter()
        codes = fn()
        sync(device)
        seconds = time.perf_counter() - start
        results[name] = (seconds, codes)
        print(f"sample {ordering:5s}  {name:15s}: context {args.context_frames}x{n} = {args.context_frames * n} "
              f"codes, {new} new {'codes' if unit == 1 else 'frames'}, batch {args.sample_batch}: "
              f"{seconds:.2f} s  {args.sample_batch * new * unit / seconds:,.0f} codes/s", flush=True)
    (t_rec, c_rec), (t_re, c_re) = results["recurrent state"], results["re-run prefix"]
    agree = (c_rec == c_re).float().mean().item()
    print(f"sample {ordering:5s}  speed-up of the recurrent state: {t_re / t_rec:.1f}x  "
          f"(greedy codes agree on {agree:.1%})", flush=True)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device}  torch threads={torch.get_num_threads()}  d_model={args.d_model}  "
          f"layers={args.num_layers}  d_state={args.d_state}  head_dim={args.head_dim}", flush=True)
    if "train-frame" not in args.skip:
        bench_train(args, "frame", args.frame_batch, device)
    if "train-token" not in args.skip:
        bench_train(args, "token", args.token_batch, device)
    if "sample-token" not in args.skip:
        bench_sample(args, "token", device)
    if "sample-frame" not in args.skip:
        bench_sample(args, "frame", device)


if __name__ == "__main__":
    main()
