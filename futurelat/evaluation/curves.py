"""Training curves as a picture: ``curves.png`` in the run directory, for readers without W&B.

The trainer appends one JSON object per logged step to ``run_dir/train_log.jsonl`` (rank 0 only,
every ``trainer.log_every`` optimizer steps)::

    {"stage": "backbone", "step": 25, "backbone/loss": 0.31, "backbone/lr": 0.0002, ...}

:func:`write_curves` draws it as one row per stage (in the order the stages first appear), with
x = the stage's optimizer step and one panel per quantity the stage logs, from :data:`PANELS`:
the loss, the learning rate, and the codebook (the VQ-VAE tokenizer's ``codebook_usage``: the
fraction of the K codes used in a batch, in [0, 1]; its ``perplexity``, in [1, K], on a second
axis). A stage that logs no codebook metric gets no codebook panel.

A resumed stage logs again the steps between its checkpoint and the crash; the line written last
for a ``(stage, step)`` wins, so each step is drawn once. Lines that are not JSON objects (a line
cut short by a crash) are skipped with a warning.

Drawn with matplotlib's object API on the Agg canvas (no ``pyplot``, no global backend switch).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

#: The trainer's per-step log in the run directory (futurelat.training.trainer).
LOG_FILE = "train_log.jsonl"
#: The picture written next to it.
CURVES_FILE = "curves.png"
#: Panels of a stage: (title, metric on the left axis, metric on a right axis or None). A panel is
#: drawn when the stage logs its left metric (the key ``"<stage>/<metric>"``).
PANELS = (
    ("loss", "loss", None),
    ("learning rate", "lr", None),
    ("codebook", "codebook_usage", "perplexity"),
)

#: stage → metric → ``[(step, value), ...]`` sorted by step.
Curves = dict[str, dict[str, list[tuple[int, float]]]]


def read_train_log(path: str | Path) -> Curves:
    """Read a ``train_log.jsonl`` into stage → metric (key without the ``"<stage>/"`` prefix) →
    ``[(step, value)]`` sorted by step, one point per step (the last line for a step wins).

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    path = Path(path)
    records: dict[str, dict[int, dict[str, float]]] = {}  # stage → step → metrics (insertion order kept)
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            stage, step = str(row["stage"]), int(row["step"])
        except (ValueError, TypeError, KeyError):
            bad += 1
            continue
        prefix = f"{stage}/"
        records.setdefault(stage, {})[step] = {
            key[len(prefix):]: float(value) for key, value in row.items()
            if key.startswith(prefix) and isinstance(value, (int, float))}
    if bad:
        log.warning("%s: skipped %d line(s) that are not log records", path, bad)
    curves: Curves = {}
    for stage, steps in records.items():
        metrics = curves.setdefault(stage, {})
        for step in sorted(steps):
            for name, value in steps[step].items():
                metrics.setdefault(name, []).append((step, value))
    return curves


def stage_panels(curves: Curves) -> dict[str, list[str]]:
    """stage → the titles of its panels (:data:`PANELS` whose left metric the stage logs), in order."""
    return {stage: [title for title, left, _ in PANELS if left in metrics] for stage, metrics in curves.items()}


def describe(curves: Curves) -> str:
    """The panels as one line, e.g. ``"backbone: loss, learning rate, codebook; head: loss, learning rate"``;
    stored as the PNG's ``Description`` text."""
    return "; ".join(f"{stage}: {', '.join(titles)}" for stage, titles in stage_panels(curves).items())


def plot_curves(curves: Curves, path: str | Path) -> Path:
    """Draw ``curves`` (from :func:`read_train_log`) to the PNG ``path``: one row per stage, one
    column per panel; the loss axis is logarithmic when the loss is positive and spans more than a
    factor of 10. Returns ``path``.

    Raises:
        ValueError: ``curves`` has no stage with a panel to draw.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = {stage: titles for stage, titles in stage_panels(curves).items() if titles}
    if not panels:
        raise ValueError(f"nothing to draw: no stage logs any of {[left for _, left, _ in PANELS]}")
    rows, cols = len(panels), max(len(titles) for titles in panels.values())
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    spec = {title: (left, right) for title, left, right in PANELS}
    for r, (stage, titles) in enumerate(panels.items()):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(titles):
                ax.set_axis_off()
                continue
            left, right = spec[titles[c]]
            _line(ax, curves[stage][left], left, "C0")
            if left == "loss" and _spans_decade(curves[stage][left]):
                ax.set_yscale("log")
            if right is not None and right in curves[stage]:
                _line(ax.twinx(), curves[stage][right], right, "C1")
            ax.set_title(f"{stage}: {titles[c]}")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Title": "training curves", "Description": describe(curves)})
    return path


def write_curves(run_dir: str | Path) -> Path | None:
    """Draw ``run_dir/train_log.jsonl`` to ``run_dir/curves.png`` and return its path; ``None``
    (nothing written) when the run trained nothing (no log file, or no drawable metric in it)."""
    run_dir = Path(run_dir)
    if not (run_dir / LOG_FILE).is_file():
        return None
    curves = read_train_log(run_dir / LOG_FILE)
    if not any(stage_panels(curves).values()):
        return None
    return plot_curves(curves, run_dir / CURVES_FILE)


def _line(ax, points: list[tuple[int, float]], label: str, color: str) -> None:
    steps, values = zip(*points)
    ax.plot(steps, values, color=color, marker="." if len(points) < 30 else None, label=label)
    ax.set_ylabel(label, color=color)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))  # 1e-4, not 0.000100


def _spans_decade(points: list[tuple[int, float]]) -> bool:
    values = [v for _, v in points if math.isfinite(v)]
    return bool(values) and min(values) > 0 and max(values) > 10 * min(values)
