"""Mean-field rollouts of a code prior at several temperatures, beside one sampled future and black frames.

    python benchmarks/bench_mean_field.py RUN_DIR
    python benchmarks/bench_mean_field.py RUN_DIR --split train --offset 500000 --temperatures 1 1.2 1.5 2

Loads the finished run ``RUN_DIR`` (a frame-ordered code prior on a backbone with a pixel decoder, e.g.
the default job's), rolls out the ``--sequences`` sequences of ``--split`` from index ``--offset``
once per temperature with ``head.params.sampling.mean_field`` (futurelat/models/heads/objectives/code_prior.py),
and prints MSE and SSIM (:mod:`futurelat.evaluation.metrics`, frames in [0, 255] units as the
evaluator's) with the MSE at future steps 1, 3, 5 and the last, and the seconds per 100 rollouts.
One sampled future (the run's sampling settings without ``mean_field``) and black frames are scored on the same
sequences. ``--split train --offset N`` picks a temperature on generated training-split sequences
(far past the indices a run trains on), so the test split is scored only once, with the chosen one.
``--png-dir`` saves context | truth | prediction rows of the first 8 sequences per row of the table.
``--gain-sequences K`` also fits each rollout's frame gains (:mod:`futurelat.evaluation.frame_gain`, as
``eval.frame_gain_sequences`` does) on the K training-split sequences from ``--gain-offset`` and adds a
row scaled by them under each row, so a temperature is chosen for the scores the evaluator reports:

    python benchmarks/bench_mean_field.py RUN_DIR --split train --offset 600000 --gain-sequences 200 \
        --gain-offset 500000 --temperatures 0.9 1 1.2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from futurelat.datasets import build_dataset
from futurelat.evaluation.frame_gain import apply_frame_gain, fit_frame_gain
from futurelat.evaluation.metrics import MetricAccumulator, frame_metrics
from futurelat.evaluation.visualize import save_prediction_grid
from futurelat.predict import load_run
from futurelat.utils.cpu_memory import reuse_freed_memory


def _row(name: str, prediction: torch.Tensor, target: torch.Tensor, seconds: float | None) -> str:
    acc = MetricAccumulator()
    acc.update(frame_metrics(prediction, target))
    m, tf = acc.compute(""), target.shape[1]
    steps = ", ".join(f"{m[f'mse/step_{k:02d}']:.0f}" for k in sorted({1, min(3, tf), min(5, tf), tf}))
    cost = "" if seconds is None else f"{seconds / len(target) * 100:.2f}"
    return f"| {name} | {m['mse']:.1f} | {m['ssim']:.4f} | {steps} | {cost} |"


def _rollouts(model, context: torch.Tensor, tf: int, batch: int) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        out = torch.cat([model.rollout(context[i:i + batch], tf) for i in range(0, len(context), batch)])
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a finished run directory")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--offset", type=int, default=0, help="index of the first sequence (default 0)")
    p.add_argument("--sequences", type=int, default=200, help="sequences scored (default 200)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 1.2, 1.5])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled future (default 0)")
    p.add_argument("--png-dir", default=None, help="save each row's picture of the first 8 sequences here")
    p.add_argument("--gain-sequences", type=int, default=0,
                   help="fit frame gains on this many training-split sequences and add gained rows (default 0: off)")
    p.add_argument("--gain-offset", type=int, default=500000, help="index of the first of them (default 500000)")
    args = p.parse_args()
    if min(args.temperatures) <= 0:
        p.error("--temperatures must be > 0")
    reuse_freed_memory()
    cfg, model = load_run(args.run)
    tc, tf = int(cfg.dataset.context_frames), int(cfg.dataset.future_frames)
    data = build_dataset(cfg.dataset, args.split)
    if args.split == "test" and args.offset + args.sequences > len(data):
        p.error(f"the test split has {len(data)} sequences; --offset + --sequences exceeds it")
    frames = torch.stack([data[args.offset + i]["frames"] for i in range(args.sequences)])
    context, target = frames[:, :tc], frames[:, tc:]
    sampling = dict(model.head.sampling)
    torch.manual_seed(args.seed)
    model.head.sampling = {**sampling, "mean_field": False}
    gain_set = (Subset(build_dataset(cfg.dataset, "train"), range(args.gain_offset, args.gain_offset + args.gain_sequences))
                if args.gain_sequences else None)

    def add(name: str) -> None:  # the rollout at the current sampling settings, and with its fitted gains
        rows[name] = _rollouts(model, context, tf, args.batch_size)
        if args.gain_sequences:
            gain = fit_frame_gain(model, gain_set, tc, tf, batch_size=args.batch_size, progress=False)
            rows[f"{name}, frame gains {gain[0]:.2f} … {gain[-1]:.2f}"] = (apply_frame_gain(rows[name][0].clamp(0, 1), gain), None)

    rows: dict[str, tuple[torch.Tensor, float | None]] = {}
    add("one sampled future (the run's other sampling settings)")
    for t in args.temperatures:
        model.head.sampling = {**sampling, "mean_field": True, "greedy": False, "temperature": t}
        add(f"mean field, T = {t:g}")
    rows["black frames"] = (torch.zeros_like(target), None)
    print(f"{args.run}: {args.split} sequences {args.offset} … {args.offset + args.sequences - 1}")
    print("| rollout | MSE | SSIM | MSE at steps | s / 100 rollouts |\n| --- | --- | --- | --- | --- |")
    for i, (name, (prediction, seconds)) in enumerate(rows.items()):
        print(_row(name, prediction, target, seconds), flush=True)
        if args.png_dir:
            Path(args.png_dir).mkdir(parents=True, exist_ok=True)
            save_prediction_grid(context[:8], target[:8], prediction[:8], Path(args.png_dir) / f"row{i}.png")


if __name__ == "__main__":
    main()
