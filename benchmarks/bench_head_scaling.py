"""How the ``mamba`` and ``transformer`` heads scale with sequence length; prints figures, asserts nothing.

Both heads run the token ordering (one causal sequence of codes, next-code cross-entropy) at the
same width and depth, and one training step (forward + backward + AdamW) is timed at each length:
the mamba head's chunked SSD scan (or ``mamba_ssm``'s kernel on CUDA when installed) against the
transformer head's causal ``scaled_dot_product_attention`` (flash / memory-efficient kernels).
Each (head, length) runs in a fresh subprocess so that its peak memory is its own: the peak
resident set size above the process's baseline on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
The figure is the median of ``--steps`` steps after ``--warmup`` untimed ones.

On CPU, ``--malloc reuse`` (the default) makes glibc keep freed memory for the next step
(:mod:`futurelat.utils.cpu_memory`, ``trainer.cpu_malloc=reuse`` in training); with
``--malloc system`` every tensor above 32 MiB is page-faulted in afresh each step, which
dominates long sequences and hides how the heads themselves scale.

    python benchmarks/bench_head_scaling.py                       # 1k, 4k, 16k tokens; ~15 min on 2 CPU cores
    python benchmarks/bench_head_scaling.py --malloc system       # glibc's default allocator behaviour
    python benchmarks/bench_head_scaling.py --device cuda --lengths 1024 4096 16384 65536

Target (issue 3): the mamba head's time per token grows at most 1.5x from 1k to 16k tokens and it
is faster than the transformer head at 16k.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.registry import HEADS
from futurelat.utils.cpu_memory import CPU_MALLOC_MODES, configure_cpu_malloc

from timing import time_train_steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--heads", nargs="+", default=["mamba", "transformer"])
    p.add_argument("--lengths", nargs="+", type=int, default=[1024, 4096, 16384], help="tokens per sequence")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--grid", type=int, default=16, help="codes per frame side; lengths must divide by grid**2")
    p.add_argument("--codebook-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=3, help="timed steps; the median is reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (the allocator's heap grows)")
    p.add_argument("--malloc", choices=CPU_MALLOC_MODES, default="reuse",
                   help="CPU allocator: reuse freed memory (trainer.cpu_malloc=reuse) or glibc's default")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: "head:length" in this process
    return p.parse_args(argv)


def build(args: argparse.Namespace, head: str, frames: int) -> torch.nn.Module:
    spec = LatentSpec(latent_dim=1, grid=(args.grid, args.grid), codebook_size=args.codebook_size)
    common = dict(ordering="token", d_model=args.d_model, num_layers=args.num_layers)
    if head == "mamba":
        params = dict(common, d_state=64, head_dim=64)
    else:
        params = dict(common, objective="autoregressive", context_latents=1, num_heads=args.d_model // 64,
                      position="rope")
    return HEADS.get(head)(spec, frames, **params)


def run_one(args: argparse.Namespace, head_name: str, length: int) -> dict:
    """Time ``args.steps`` training steps of one head at one length, in this process."""
    device = torch.device(args.device)
    n = args.grid ** 2
    if length % n:
        raise SystemExit(f"--lengths must be multiples of grid**2 = {n}; got {length}")
    if device.type == "cpu":
        configure_cpu_malloc(args.malloc)
    torch.manual_seed(0)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    head = build(args, head_name, length // n).to(device).train()
    codes = torch.randint(0, args.codebook_size, (args.batch, length // n, n), device=device)
    z = Latents(latents=torch.empty(*codes.shape, 0, device=device), codes=codes)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step = time_train_steps(head, z, args.steps, device, warmup=args.warmup)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    backend = getattr(head, "backend", "sdpa")
    return {"head": head_name, "backend": backend, "length": length, "step_s": step,
            "us_per_token": 1e6 * step / (args.batch * length), "peak_mib": peak_mib,
            "params": sum(p.numel() for p in head.parameters())}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        head, length = args.one.split(":")
        print(json.dumps(run_one(args, head, int(length))))
        return
    passthrough = [a for a in sys.argv[1:]]
    rows = []
    print(f"device={args.device} threads={args.threads or torch.get_num_threads()} batch={args.batch} "
          f"d_model={args.d_model} layers={args.num_layers} malloc={args.malloc}; median of {args.steps} "
          f"fwd+bwd+AdamW steps after {args.warmup} warm-up, token ordering", flush=True)
    for head in args.heads:
        for length in args.lengths:
            out = subprocess.run([sys.executable, __file__, *passthrough, "--one", f"{head}:{length}"],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{head:12s} L={length:>6}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['head']:12s} ({row['backend']:9s}) L={length:>6}: {row['step_s']:8.2f} s/step  "
                  f"{row['us_per_token']:8.1f} us/token  peak {row['peak_mib']:8.0f} MiB  "
                  f"params {row['params'] / 1e6:.2f}M", flush=True)
    by = {(r["head"], r["length"]): r for r in rows}
    lo, hi = min(args.lengths), max(args.lengths)
    if ("mamba", lo) in by and ("mamba", hi) in by:
        growth = by[("mamba", hi)]["us_per_token"] / by[("mamba", lo)]["us_per_token"]
        print(f"mamba time per token, {hi} vs {lo} tokens: {growth:.2f}x (target <= 1.5x)")
    if ("mamba", hi) in by and ("transformer", hi) in by:
        ratio = by[("transformer", hi)]["step_s"] / by[("mamba", hi)]["step_s"]
        print(f"transformer / mamba step time at {hi} tokens: {ratio:.2f}x (target > 1)")


if __name__ == "__main__":
    main()
