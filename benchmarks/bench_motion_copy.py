"""What a code prior with motion copy (``head.params.motion_copy``) does with it, and what its rollouts cost.

    python benchmarks/bench_motion_copy.py RUN_DIR
    python benchmarks/bench_motion_copy.py RUN_DIR --sequences 16 --rollouts 100

``RUN_DIR`` is a finished ``python -m futurelat.main head.params.motion_copy=R`` run (its ``config.yaml`` and
checkpoints; futurelat/models/heads/objectives/motion_copy.py). On the first ``--sequences`` test clips, read
teacher-forced, it prints the mean share of probability the gates give the copy (``1 - g``) on moving positions
(whose next patch of codes differs from their own) and on static ones, the mean weight of each source offset
on moving positions as a (2R+1) x (2R+1) grid (rows dy, columns dx, in codes), and the mean largest offset
weight. Then the seconds of one rollout of ``--rollouts`` test clips (the run's sampling settings, the median of
3) and the milliseconds of one copy step (:meth:`MotionCopy.copied`) over that many frames. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from futurelat.datasets import build_dataset
from futurelat.models.heads.patches import patchify
from futurelat.predict import load_run
from futurelat.utils.cpu_memory import reuse_freed_memory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run directory whose prior has head.params.motion_copy > 0")
    parser.add_argument("--sequences", type=int, default=16, help="test clips read teacher-forced (default 16)")
    parser.add_argument("--rollouts", type=int, default=100, help="test clips per timed rollout (default 100)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reuse_freed_memory()
    cfg, model = load_run(args.run)
    model.eval()
    prior, trunk = model.head.objective, model.head.trunk
    copy = getattr(prior, "copy", None)
    if copy is None:
        raise SystemExit(f"{args.run}: its head has no motion copy (head.params.motion_copy is 0 or absent)")
    dataset = build_dataset(cfg.dataset, "test")
    count = max(args.sequences, args.rollouts)
    frames = torch.stack([dataset[i]["frames"] for i in range(count)])
    context = int(cfg.dataset.context_frames)
    with torch.no_grad():
        codes = model.encode(frames[:args.sequences]).codes  # (B, T, N)
        x = trunk(prior.embed_frames(codes[:, :-1])).view(codes.shape[0], codes.shape[1] - 1, prior.frame_tokens, -1)
        offset_logits, _, log_rest = copy.weights(x)
        pi = torch.softmax(offset_logits, -1)  # (B, T-1, M, O); the grid's border renormalizes in the prior itself
        patches = patchify(codes[..., None], prior.grid, prior.patch_size)
        moving = ~(patches[:, 1:] == patches[:, :-1]).all(-1)  # (B, T-1, M)
        share = log_rest.exp()
        side = 2 * copy.radius + 1
        out = {"run": args.run, "radius": copy.radius,
               "copy_share_moving": round(share[moving].mean().item(), 4),
               "copy_share_static": round(share[~moving].mean().item(), 4),
               "offset_weights_moving": pi[moving].mean(0).view(side, side).round(decimals=3).tolist(),
               "largest_offset_weight_moving": round(pi[moving].max(-1).values.mean().item(), 3)}
        clips = frames[:args.rollouts, :context]
        model.rollout(clips, 1)  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model.rollout(clips, int(cfg.dataset.future_frames))
            times.append(time.perf_counter() - start)
        prev = torch.softmax(torch.randn(args.rollouts, prior.tokens_per_frame, prior.num_codes), -1)
        logits = torch.randn(args.rollouts, prior.frame_tokens, len(copy.offsets))
        copy.copied(prev, logits)
        steps = []
        for _ in range(5):
            start = time.perf_counter()
            copy.copied(prev, logits)
            steps.append(time.perf_counter() - start)
    out["rollout_s"] = round(statistics.median(times), 2)
    out["copy_step_ms"] = round(statistics.median(steps) * 1e3, 1)
    out["rollout_clips"] = args.rollouts
    print(json.dumps(out))


if __name__ == "__main__":
    main()
