"""What ``trainer.compile`` buys: a head's training step with its eager trunk against its compiled one.

    python benchmarks/bench_compile.py RUN_DIR                 # the run's head, 4 clips per step (--batch)
    python benchmarks/bench_compile.py RUN_DIR --rounds 5 --steps 10

``RUN_DIR`` is a finished ``python -m futurelat.main`` run (its ``config.yaml`` and checkpoints). Its frozen
backbone encodes ``--batch`` training clips once; the head (the run's trained weights, in training mode)
then takes optimizer steps on them (forward, backward, AdamW; no data loading or encoding, which
``trainer.compile`` does not touch), alternately eager and compiled (:mod:`futurelat.training.compile`), in
``--rounds`` rounds of ``--steps`` steps after a warm-up, so that both see the same machine load. Printed
(one JSON line): the first compiled step's seconds (the compilation; a few seconds when Inductor's cache
holds these shapes), the median ms per step of each, their ratio, and the largest difference between the
two losses of the first step. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from futurelat.datasets import build_dataset
from futurelat.predict import load_run
from futurelat.training.compile import CompiledTrunk
from futurelat.utils.cpu_memory import reuse_freed_memory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run directory")
    parser.add_argument("--batch", type=int, default=4,
                        help="clips per step (default 4; the default job trains on 1 since 2026-12-02)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--steps", type=int, default=10, help="steps per round and mode (default 10)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    reuse_freed_memory()
    cfg, model = load_run(args.run)
    head = model.head.train()
    head.requires_grad_(True)
    dataset = build_dataset(cfg.dataset, "train")
    frames = torch.stack([dataset[i]["frames"] for i in range(args.batch)])
    with torch.no_grad():
        inputs = model.head_inputs({"frames": frames})
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)

    def step() -> float:
        loss = head(**inputs)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    torch.manual_seed(0)
    eager_loss = float(head(**inputs)["loss"])
    compiled = CompiledTrunk(head.trunk, "bench_compile")
    head.set_training_trunk(compiled)
    torch.manual_seed(0)
    start = time.perf_counter()
    compiled_loss = float(head(**inputs)["loss"])
    optimizer.zero_grad(set_to_none=True)
    step()  # the backward's compilation too
    first = time.perf_counter() - start
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for mode in ("eager", "compiled"):
            head.set_training_trunk(compiled if mode == "compiled" else None)
            step()  # warm-up after the switch
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[mode].append((time.perf_counter() - start) / args.steps * 1e3)
    head.set_training_trunk(None)
    eager, fast = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(json.dumps({"run": str(args.run), "batch": args.batch, "fell_back_to_eager": compiled.eager,
                      "first_compiled_step_s": round(first, 1), "eager_ms": round(eager, 1),
                      "compiled_ms": round(fast, 1), "speedup": round(eager / fast, 2),
                      "eager_rounds_ms": [round(t, 1) for t in times["eager"]],
                      "compiled_rounds_ms": [round(t, 1) for t in times["compiled"]],
                      "first_loss_difference": abs(eager_loss - compiled_loss)}))


if __name__ == "__main__":
    main()
