"""What the pixel and the latent evaluator share: batch checks, the progress bar, eval mode,
the best-of-k pick and ``metrics.json``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from futurelat.models.base import check_frames

#: The metrics file written in an evaluation's ``out_dir``.
METRICS_FILE = "metrics.json"
#: Tolerance on the [0, 1] range check of dataset frames.
_RANGE_TOL = 1e-4


def check_frame_batch(frames: Tensor, start: int, total_frames: int) -> None:
    """Validate a batch of dataset frames; errors name the dataset index and key."""
    where = f"dataset[{start}:{start + frames.shape[0]}]['frames']"
    check_frames(frames, where)
    if frames.shape[1] != total_frames:
        raise ValueError(f"{where} has T={frames.shape[1]} frames (shape {tuple(frames.shape[1:])}); "
                         f"expected context_frames + future_frames = {total_frames}")
    lo, hi = float(frames.min()), float(frames.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"{where} has values in [{lo:.4g}, {hi:.4g}]; frames must be in [0, 1]")


def check_eval_arguments(counts: Mapping[str, Any], num_visualize: Any, max_sequences: Any,
                         optional_counts: Mapping[str, Any] | None = None) -> None:
    """``counts`` (name → value, e.g. ``{"batch_size": 100}``) must be positive ints,
    ``num_visualize`` an int >= 0, ``max_sequences`` and each of ``optional_counts`` (name → value)
    ``None`` or a positive int.

    Raises:
        ValueError: naming the first bad argument and its value.
    """
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if not isinstance(num_visualize, int) or num_visualize < 0:
        raise ValueError(f"num_visualize must be an int >= 0; got {num_visualize!r}")
    for name, value in {"max_sequences": max_sequences, **(optional_counts or {})}.items():
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be None or a positive int; got {value!r}")


def evaluation_progress(enabled: bool) -> Progress:
    """The rich progress bar of the evaluators (``evaluate <description>  ━━━  12/100  0:00:03``)."""
    return Progress(TextColumn("[bold]evaluate[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(), disable=not enabled)


@contextmanager
def evaluation_mode(model: Any, device: torch.device) -> Iterator[None]:
    """Move an ``nn.Module`` to ``device`` in eval mode for the block; its train/eval mode is restored after.

    Anything that is not an ``nn.Module`` is left alone.
    """
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.to(device)
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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
