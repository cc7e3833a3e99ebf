"""Sampling throughput of the ``flow_dit`` head (futurelat/models/heads/flow_dit.py) vs ODE steps;
prints a table, asserts nothing.

A small head (untrained: the cost does not depend on the weights) on Moving-MNIST-sized latents:
``--context-frames`` + ``--future-frames`` latent frames of a ``--grid x --grid`` token grid with
``--latent-dim`` channels. For each solver (euler: ``steps`` velocity evaluations, heun:
``2 * steps``) and step count it times one :meth:`FlowDiTHead.rollout` of ``--future-frames``
frames for a batch of ``--batch`` contexts and reports samples/s (one sample = one clip's future)
and milliseconds per network evaluation (NFE). ``--guidance-scale != 1`` doubles the batch of every
evaluation (classifier-free guidance). Optionally also one training step (fwd + bwd + AdamW).

    python benchmarks/bench_flow_sampling.py                       # ~2-3 min on 2 CPU cores
    python benchmarks/bench_flow_sampling.py --steps 1 2 4 --conditioning cross_attention
    python benchmarks/bench_flow_sampling.py --device cuda --batch 64 --steps 1 2 4 8 16 32
"""

from __future__ import annotations

import argparse
import time

import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.flow_dit import FlowDiTHead

from timing import sync, time_train_steps


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--batch", type=int, default=16, help="contexts per rollout")
    p.add_argument("--context-frames", type=int, default=10)
    p.add_argument("--future-frames", type=int, default=10)
    p.add_argument("--grid", type=int, default=16, help="tokens per latent-frame side (N = grid**2)")
    p.add_argument("--latent-dim", type=int, default=64, help="D")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=2)
    p.add_argument("--conditioning", default="in_context", choices=["in_context", "cross_attention"])
    p.add_argument("--solvers", nargs="+", default=["euler", "heun"], choices=["euler", "heun"])
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--guidance-scale", type=float, default=1.0)
    p.add_argument("--train-steps", type=int, default=2, help="timed training steps after 1 warm-up (0: skip)")
    return p.parse_args()



def build(args: argparse.Namespace, device: torch.device) -> FlowDiTHead:
    torch.manual_seed(0)
    spec = LatentSpec(latent_dim=args.latent_dim, grid=(args.grid, args.grid))
    head = FlowDiTHead(spec, args.context_frames + args.future_frames, context_latents=args.context_frames,
                       d_model=args.d_model, num_layers=args.num_layers, num_heads=args.num_heads,
                       patch_size=args.patch_size, conditioning=args.conditioning)
    return head.to(device)


def random_latents(args: argparse.Namespace, frames: int, device: torch.device) -> Latents:
    g = torch.Generator().manual_seed(0)
    return Latents(torch.randn(args.batch, frames, args.grid ** 2, args.latent_dim, generator=g).to(device))


def bench_train(args: argparse.Namespace, head: FlowDiTHead, device: torch.device) -> None:
    z = random_latents(args, args.context_frames + args.future_frames, device)
    step = time_train_steps(head, z, args.train_steps, device)
    print(f"train (fwd + bwd + AdamW), batch {args.batch}: {step:.2f} s/step  {args.batch / step:.1f} clips/s\n",
          flush=True)


def bench_sampling(args: argparse.Namespace, head: FlowDiTHead, device: torch.device) -> None:
    context = random_latents(args, args.context_frames, device)
    head.sampling = {"solver": "euler", "steps": 1, "guidance_scale": args.guidance_scale}
    head.rollout(context, args.future_frames)  # warm-up
    print(f"{'solver':>6} {'steps':>5} {'NFE':>4} {'s/rollout':>10} {'samples/s':>10} {'ms/NFE':>8}")
    for solver in args.solvers:
        for steps in args.steps:
            head.sampling = {"solver": solver, "steps": steps, "guidance_scale": args.guidance_scale}
            nfe = steps * (2 if solver == "heun" else 1)
            sync(device)
            start = time.perf_counter()
            head.rollout(context, args.future_frames, generator=torch.Generator(device).manual_seed(0))
            sync(device)
            seconds = time.perf_counter() - start
            print(f"{solver:>6} {steps:>5} {nfe:>4} {seconds:>10.3f} {args.batch / seconds:>10.2f} "
                  f"{1000 * seconds / nfe:>8.1f}", flush=True)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    head = build(args, device)
    params = sum(p.numel() for p in head.parameters())
    tokens = (args.context_frames + args.future_frames) * (args.grid // args.patch_size) ** 2
    print(f"device={device}  torch threads={torch.get_num_threads()}  conditioning={args.conditioning}  "
          f"params={params / 1e6:.2f}M  d_model={args.d_model}  layers={args.num_layers}  heads={args.num_heads}  "
          f"patch={args.patch_size}  latents {args.context_frames}+{args.future_frames} x {args.grid}x{args.grid} "
          f"x D={args.latent_dim} ({tokens} tokens per clip)  batch={args.batch}  "
          f"guidance_scale={args.guidance_scale}", flush=True)
    if args.train_steps > 0:
        bench_train(args, head, device)
    bench_sampling(args, head, device)


if __name__ == "__main__":
    main()
