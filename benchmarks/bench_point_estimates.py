"""Point estimates of a sampled model's futures: one sample, the mean and the median of k, per step.

    python benchmarks/bench_point_estimates.py RUN_DIR
    python benchmarks/bench_point_estimates.py RUN_DIR --samples 5 --sequences 200 --png median.png

Loads the finished run ``RUN_DIR`` (``python -m futurelat.main`` output with a pixel decoder), draws
``--samples`` futures of each of the first ``--sequences`` test sequences, and prints MSE and SSIM
(:mod:`futurelat.evaluation.metrics`) with the MSE per future step of: the first sample, the per-pixel
mean of all ``k``, the per-pixel median of the first ``j`` for ``j = 2 .. k``
(:func:`futurelat.evaluation.ensemble.point_estimate`; the lower middle value for even ``j``), and
black frames on the same sequences. Each row reuses the same draws, so the rows differ only in the
reduction. It answers how many samples ``eval.point_estimate=median`` needs before running it on the
whole test set. ``--png`` saves context | truth | median-of-k rows of the first 8 sequences.
"""

from __future__ import annotations

import argparse
import time

import torch

from futurelat.datasets import build_dataset
from futurelat.evaluation.ensemble import point_estimate
from futurelat.evaluation.metrics import MetricAccumulator, frame_metrics
from futurelat.evaluation.visualize import save_prediction_grid
from futurelat.predict import load_run
from futurelat.utils.cpu_memory import reuse_freed_memory


def _scores(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    acc = MetricAccumulator()
    acc.update(frame_metrics(prediction, target))
    return acc.compute("")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a finished run directory")
    p.add_argument("--samples", type=int, default=5, help="futures per context (default 5)")
    p.add_argument("--sequences", type=int, default=200, help="first test sequences scored (default 200)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", default=None, help="save the median's picture of the first 8 sequences here")
    args = p.parse_args()
    if args.samples < 2:
        p.error("--samples must be >= 2")
    reuse_freed_memory()
    torch.manual_seed(args.seed)
    cfg, model = load_run(args.run)
    sampling = dict(getattr(model.head, "sampling", None) or {})
    if sampling.get("mean_field"):  # a code prior's mean-field rollout draws nothing: sample codes instead
        model.head.sampling = {**sampling, "mean_field": False}
    tc, tf = int(cfg.dataset.context_frames), int(cfg.dataset.future_frames)
    test = build_dataset(cfg.dataset, "test")
    frames = torch.stack([test[i]["frames"] for i in range(min(args.sequences, len(test)))])
    context, target = frames[:, :tc], frames[:, tc:]
    start = time.perf_counter()
    with torch.no_grad():
        samples = torch.stack([torch.cat([model.rollout(context[i:i + args.batch_size], tf).clamp(0, 1)
                                          for i in range(0, len(frames), args.batch_size)])
                               for _ in range(args.samples)])  # (k, B, Tf, C, H, W)
    seconds = time.perf_counter() - start
    rows = {"one sample": samples[0], f"mean of {args.samples}": point_estimate(samples, "mean")}
    rows.update({f"median of {j}": point_estimate(samples[:j], "median") for j in range(2, args.samples + 1)})
    rows["black frames"] = torch.zeros_like(target)
    print(f"{args.run}: {len(frames)} sequences, {args.samples} samples, "
          f"{seconds / args.samples / len(frames) * 100:.2f} s per 100 rollouts")
    print(f"| estimate | MSE | SSIM | MSE per step 1 … {tf} |\n| --- | --- | --- | --- |")
    for name, prediction in rows.items():
        m = _scores(prediction, target)
        steps = " ".join(f"{m[f'mse/step_{k:02d}']:.0f}" for k in range(1, tf + 1))
        print(f"| {name} | {m['mse']:.1f} | {m['ssim']:.3f} | {steps} |")
    if args.png:
        save_prediction_grid(context[:8], target[:8], rows[f"median of {args.samples}"][:8], args.png)
        print("saved", args.png)


if __name__ == "__main__":
    main()
