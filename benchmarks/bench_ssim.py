"""Seconds of the evaluation's SSIM (:func:`futurelat.evaluation.metrics.frame_ssim`) with and without oneDNN.

    python benchmarks/bench_ssim.py                      # 100 clips of 10 frames, 64 x 64, one channel
    python benchmarks/bench_ssim.py --clips 100 --size 64 --repeats 5

The evaluator scores each test batch (100 Moving MNIST clips of 10 future frames) about four times:
the model, its unscaled rollout, copy-last and black frames. ``frame_ssim`` runs torchmetrics' SSIM with
oneDNN switched off on CPU; this script times that call beside the same torchmetrics call with oneDNN on
(PyTorch's default), alternately, on digit-like frames (sparse ink against a blurred prediction).
Printed (one JSON line): the median seconds of each, their ratio, and the largest difference between
their SSIM values. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from futurelat.evaluation.metrics import SSIM_KERNEL_SIZE, SSIM_SIGMA, frame_ssim


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100, help="clips per call (default 100, an evaluation batch)")
    parser.add_argument("--frames", type=int, default=10, help="frames per clip (default 10)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width in pixels (default 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each (default 5)")
    return parser.parse_args(argv)


def torchmetrics_default(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The same SSIM with PyTorch's default convolution backend: ``(B, T, 1, H, W)`` ×2 → ``(B, T)``."""
    b, t = prediction.shape[:2]
    return structural_similarity_index_measure(
        prediction.clamp(0, 1).flatten(0, 1), target.flatten(0, 1), gaussian_kernel=True, sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE, data_range=1.0, reduction="none").reshape(b, t)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    shape = (args.clips, args.frames, 1, args.size, args.size)
    target = (torch.rand(shape, generator=generator) > 0.85).float()  # sparse ink, as digits on black
    prediction = torch.nn.functional.avg_pool2d(target.flatten(0, 2), 5, 1, 2).reshape(shape)  # a blur of it
    times: dict[str, list[float]] = {"onednn": [], "frame_ssim": []}
    values = {}
    for i in range(args.repeats + 1):  # the first round warms up
        for name, fn in (("onednn", torchmetrics_default), ("frame_ssim", frame_ssim)):
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
