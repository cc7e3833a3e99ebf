"""Seconds of FVD feature extraction: I3D on ``--clips`` clips of ``--frames`` frames at ``--size`` px,
upsampled to 224 px as the reference does (futurelat/evaluation/fvd.py).

    python benchmarks/bench_fvd.py                          # 16 clips x 16 frames, 64 px → 224, CPU
    python benchmarks/bench_fvd.py --chunk-sizes 4 16 --device cuda
    python benchmarks/bench_fvd.py --weights ~/.cache/torch/futurelat/rgb_imagenet.pt

Random I3D weights unless ``--weights`` (the time does not depend on the values). Times
``FrechetVideoDistance.features`` (resize, scale, I3D forward, float64 copy to the CPU): the median
of ``--repeats`` runs after one untimed warm-up, per (threads, chunk size), printed as a markdown
table with the process's CPU seconds for the same runs (on a shared machine wall seconds grow with
the load; CPU seconds / threads is about the wall time alone) and its peak resident memory so far.
An FVD over real and generated sets costs twice the per-set time, plus the Fréchet distance itself
(milliseconds at 400 features). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import time

import torch

from futurelat.evaluation.fvd import FrechetVideoDistance, load_i3d
from futurelat.evaluation.i3d import InceptionI3d
from timing import sync


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="frame size before the resize to 224")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--chunk-sizes", nargs="+", type=int, default=[8], help="clips per I3D forward")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()],
                   help="intra-op CPU threads (on a busy machine 1 can beat 2: OpenMP spin-waits)")
    p.add_argument("--weights", default=None, help="an I3D weight file (default: random weights)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    i3d = load_i3d(args.weights) if args.weights else InceptionI3d()
    clips = torch.rand(args.clips, args.frames, args.channels, args.size, args.size)
    print(f"torch {torch.__version__}, device {device}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| clips | frames | size | chunk | threads | seconds | CPU seconds | clips/s | peak RSS (GB) |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for threads, chunk in itertools.product(args.threads, args.chunk_sizes):
        torch.set_num_threads(threads)
        fvd = FrechetVideoDistance(i3d, chunk_size=chunk, device=device)
        times, cpu_times = [], []
        for i in range(args.repeats + 1):
            sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            fvd.features(clips)
            sync(device)
            if i:
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
        seconds = statistics.median(times)
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"| {args.clips} | {args.frames} | {args.size} → 224 | {chunk} | {threads} | {seconds:.1f} | "
              f"{statistics.median(cpu_times):.1f} | {args.clips / seconds:.2f} | {peak_gb:.1f} |", flush=True)


if __name__ == "__main__":
    main()
