"""Peak memory and time of a frozen VQ-VAE encoding one clip, by codebook size K.

    python benchmarks/bench_vq_memory.py                          # K = 2^10, 2^14, 2^18; default budget
    python benchmarks/bench_vq_memory.py --max-search-bytes 4e9   # a larger budget (the old 8192-row chunks
                                                                  # took 5120 x K floats for this clip)

Each K runs in a fresh subprocess (torch's CPU allocations are invisible to tracemalloc): it builds the
default VQ-VAE (``backbone=vqvae``: 64x64 frames → 16x16 tokens of D = 64) with K codes, warms up on
one frame and one token, then times ``encode`` of one ``--frames``-frame 64x64 clip in eval mode (the
frozen backbone of stage 2, caching and evaluation) and reads the process's peak RSS
(``resource.getrusage``). Printed per K: the RSS before encoding (interpreter, torch, the model), the
peak during it, their difference (the search's temporaries and the activations), and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

MiB = 2**20


def _peak_rss() -> int:
    """The process's peak resident set size in bytes (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(codebook_size: int, frames: int, max_search_bytes: int | None, threads: int | None) -> dict:
    """Run in the child: encode one clip with a K-code VQ-VAE; returns the figures (bytes, seconds)."""
    import torch

    from futurelat.models.backbones.vqvae import VQVAE

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    extra = {} if max_search_bytes is None else {"max_search_bytes": max_search_bytes}
    model = VQVAE(in_channels=3, codebook_size=codebook_size, kmeans_init=False, **extra).eval()
    clip = torch.rand(1, frames, 3, 64, 64)
    with torch.no_grad():  # warm-up (kernels, thread pool) on one frame and one token: no large buffer
        model.nearest_codes(model.encoder(clip[0, :1]).flatten(2).transpose(1, 2)[:, :1])
        before = _peak_rss()
        start = time.perf_counter()
        codes = model.encode(clip).codes
        seconds = time.perf_counter() - start
    peak = _peak_rss()
    return {"K": codebook_size, "before": before, "peak": peak, "seconds": seconds,
            "tokens": codes.numel(), "budget": model.max_search_bytes, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log2-codes", type=int, nargs="+", default=[10, 14, 18], help="log2 K per run")
    parser.add_argument("--frames", type=int, default=20, help="frames of the clip")
    parser.add_argument("--max-search-bytes", type=float, default=None, help="budget (default: the schema's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = None if args.max_search_bytes is None else int(args.max_search_bytes)
    if args.child is not None:
        print(json.dumps(measure(args.child, args.frames, budget, args.threads)))
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"one {args.frames}-frame 64x64 clip, default VQ-VAE (D=64, 16x16 tokens), eval-mode encode\n")
    print("| K | search budget | RSS before (MiB) | peak RSS (MiB) | peak - before (MiB) | encode (s) |")
    print("|---|---|---|---|---|---|")
    for log2 in args.log2_codes:
        command = [sys.executable, __file__, "--child", str(2**log2), "--frames", str(args.frames)]
        command += [] if budget is None else ["--max-search-bytes", str(budget)]
        command += [] if args.threads is None else ["--threads", str(args.threads)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"| 2^{log2} | {result['budget'] / MiB:.0f} MiB | {result['before'] / MiB:.0f} | {result['peak'] / MiB:.0f} "
              f"| {(result['peak'] - result['before']) / MiB:.0f} | {result['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
