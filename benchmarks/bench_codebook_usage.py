"""Codebook usage of a finished run's tokenizer on its training and held-out clips.

    python benchmarks/bench_codebook_usage.py RUN_DIR
    python benchmarks/bench_codebook_usage.py RUN_DIR --max-clips 500

The frozen backbone of ``RUN_DIR`` (``python -m futurelat.main`` output with a discrete backbone: the
VQ-VAE or MAGVIT-v2 + FSQ; its EMA weights when it kept them, as evaluation loads it) encodes
clips of the run's dataset: for a ``video_file`` dataset (``steamboat_willie``) every valid clip start
of each split (:meth:`VideoFileDataset.clip_starts`, so the training part is covered without
random draws), else the first ``--max-clips`` items. Printed per split: clips, tokens, the codes
used (count and share of ``K``), the perplexity ``exp(entropy)`` of the code frequencies, and for
FSQ how many tokens fall on the rarest level of each channel (0 = a level never used).

The evaluator's ``reconstruction/codebook_usage`` is the held-out figure for its
``eval.reconstruct_sequences`` clips; this script separates what the data allows (the training part
usually moves more) from what the tokenizer does.
"""

from __future__ import annotations

import argparse
import math

import torch

from futurelat.datasets import build_dataset
from futurelat.predict import load_run


def _clips(dataset, max_clips: int):
    """(frames (1, T, C, H, W)) for every valid start of a video-file split, else the first items."""
    if hasattr(dataset, "clip_starts"):
        if dataset.frames is None:
            dataset[0]  # maps the frame caches
        for v, s in dataset.clip_starts()[:max_clips]:
            clip = torch.from_numpy(dataset.frames[v][s:s + dataset.num_frames].copy()).float() / 255
            yield clip[None]
        return
    for i in range(min(len(dataset), max_clips)):
        yield dataset[i]["frames"][None].float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--max-clips", type=int, default=10_000, help="clips per split at most (default 10,000)")
    args = parser.parse_args()
    cfg, model = load_run(args.run_dir)
    num_codes = model.spec.codebook_size
    if not num_codes:
        raise SystemExit(f"{args.run_dir}: backbone '{cfg.backbone.name}' has no codebook")
    levels = list(cfg.backbone.params.get("levels") or []) if cfg.backbone.name == "magvit2_fsq" else []
    for split in ("train", "test"):
        counts = torch.zeros(num_codes, dtype=torch.long)
        clips = 0
        with torch.no_grad():
            for frames in _clips(build_dataset(cfg.dataset, split), args.max_clips):
                counts += torch.bincount(model.encode(frames).codes.flatten(), minlength=num_codes)
                clips += 1
        p = counts[counts > 0].double() / counts.sum()
        used = int((counts > 0).sum())
        line = (f"{split:5s}: {clips} clips, {int(counts.sum())} tokens, {used} of {num_codes} codes used "
                f"({used / num_codes:.1%}), perplexity {math.exp(float(-(p * p.log()).sum())):.0f}")
        if levels:  # tokens on the rarest level of each FSQ channel (mixed-radix digits of the code)
            codes = torch.repeat_interleave(torch.arange(num_codes), counts)
            rarest, basis = [], 1
            for n in levels:
                rarest.append(int(torch.bincount((codes // basis) % n, minlength=n).min()))
                basis *= n
            line += f"; rarest level per channel {rarest} tokens"
        print(line)


if __name__ == "__main__":
    main()
