"""Seconds of the evaluation's SSIM (:func:`futurelat.evaluation.metrics.frame_ssim`) with and without oneDNN.

    python benchmarks/bench_ssim.py                      # 100 clips of 10 frames, 64 x 64, one channel
    python benchmarks/bench_ssim.py --clips 100 --size 64 --repeats 5

The evaluator scores each test batch (100 Moving MNIST clips of 10 future frames) about four times:
the model, its unscaled rollout, copy-last and black frames. ``frame_ssim`` runs torchmetrics' SSIM with
oneDNN switched off on CPU; this script times it beside the same call with that switch left alone (oneDNN
on, PyTorch's default), alternately, on digit-like frames (sparse ink against a blurred prediction).
Printed (one JSON line): the median seconds of each, their ratio, and the largest difference between
their SSIM values. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from unittest import mock

import torch

from futurelat.evaluation import metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100, help="clips per call (default 100, an evaluation batch)")
    parser.add_argument("--frames", type=int, default=10, help="frames per clip (default 10)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels (default 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each (default 5)")
    return parser.parse_args(argv)


def frame_ssim_with_onednn(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``frame_ssim`` with PyTorch's default convolution backend: ``(B, T, 1, H, W)`` ×2 → ``(B, T)``."""
    with mock.patch.object(metrics, "_plain_cpu_convolution", lambda device: contextlib.nullcontext()):
        return metrics.frame_ssim(prediction, target)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    shape = (args.clips, args.frames, 1, args.size, args.size)
    target = (torch.rand(shape, generator=generator) > 0.85).float()  # sparse ink, as digits on black
    prediction = torch.nn.functional.avg_pool2d(target.flatten(0, 2), 5, 1, 2).reshape(shape)  # a blur of it
    times: dict[str, list[float]] = {"onednn": [], "frame_ssim": []}
    values = {}
    for i in range(args.repeats + 1):  # the first round warms up
        for name, fn in (("onednn", frame_ssim_with_onednn), ("frame_ssim", metrics.frame_ssim)):
            start = time.perf_counter()
            values[name] = fn(prediction, target)
            if i:
                times[name].append(time.perf_counter() - start)
    onednn, plain = statistics.median(times["onednn"]), statistics.median(times["frame_ssim"])
    print(json.dumps({"frames": args.clips * args.frames, "size": args.size, "threads": torch.get_num_threads(),
                      "onednn_s": round(onednn, 3), "frame_ssim_s": round(plain, 3),
                      "speedup": round(onednn / plain, 2),
                      "max_difference": float((values["onednn"] - values["frame_ssim"]).abs().max())}))


if __name__ == "__main__":
    main()
