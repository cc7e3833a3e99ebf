"""What an evaluation returns: the best-of-k pick over sampled futures, the flat metrics dict and ``metrics.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: The metrics file written in an evaluation's ``out_dir``.
METRICS_FILE = "metrics.json"


def collect_metrics(accumulators: Mapping[str, Any], *, num_sequences: int, num_samples: int,
                    extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """One flat, key-sorted dict: every ``MetricAccumulator``'s ``compute(prefix)`` (``accumulators``
    maps prefix → accumulator), ``test/num_sequences``, ``test/num_samples`` and ``extra``."""
    metrics: dict[str, float] = {}
    for prefix, acc in accumulators.items():
        metrics.update(acc.compute(prefix))
    metrics["test/num_sequences"] = float(num_sequences)
    metrics["test/num_samples"] = float(num_samples)
    metrics.update(extra or {})
    return dict(sorted(metrics.items()))


def write_metrics(metrics: Mapping[str, float], out_dir: str | Path) -> Path:
    """Write ``out_dir/metrics.json`` (indent 2, sorted keys; folder created); returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / METRICS_FILE
    path.write_text(json.dumps(dict(metrics), indent=2, sort_keys=True, allow_nan=True) + "\n")
    return path


def best_of_k(per_sample: Sequence[Mapping[str, Tensor]], key: str, higher_is_better: bool = False
              ) -> dict[str, Tensor]:
    """Per-frame metrics of each sequence's best sample, judged by its mean ``key`` over frames.

    Args:
        per_sample: ``k >= 1`` dicts ``{name: (B, T)}`` with the same names and shapes (one per
            sampled future of the same ``B`` contexts).
        key: the metric that ranks samples, e.g. ``"l1"`` (latents) or ``"mse"`` (pixels).
        higher_is_better: pick the largest mean ``key`` (e.g. cosine) instead of the smallest.

    Returns:
        One dict ``{name: (B, T)}``: row ``b`` of every metric comes from the sample that is best
        for sequence ``b`` (an oracle pick; ties go to the earliest sample).

    Raises:
        ValueError: if ``per_sample`` is empty or ``key`` is not one of its metrics.
    """
    if not per_sample:
        raise ValueError("best_of_k needs at least one sample's metrics; got none")
    if key not in per_sample[0]:
        raise ValueError(f"best_of_k: ranking key {key!r} not among the metrics {sorted(per_sample[0])}")
    score = torch.stack([m[key].mean(1) for m in per_sample])  # (k, B)
    best = (score.argmax(0) if higher_is_better else score.argmin(0))  # (B,) sample index
    rows = torch.arange(best.shape[0], device=best.device)
    return {name: torch.stack([m[name] for m in per_sample])[best, rows] for name in per_sample[0]}
