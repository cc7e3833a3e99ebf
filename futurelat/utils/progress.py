"""The rich progress bar of the trainer, the evaluators and the cache command."""

from __future__ import annotations

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def progress_bar(label: str, enabled: bool, fields: str | None = None) -> Progress:
    """``label description  ━━━━━━  12/100  <fields>  0:00:03  0:00:21`` (elapsed, then remaining).

    Args:
        label: bold first word, e.g. ``"train"``, ``"evaluate"``, ``"cache"``; each task's
            ``description`` follows it.
        enabled: ``False`` gives a bar that prints nothing (other ranks, ``progress: false``).
        fields: optional rich format string of the tasks' extra fields, e.g.
            ``"loss {task.fields[loss]:.4g}"``; every task then needs those fields.
    """
    columns = [TextColumn(f"[bold]{label}[/] {{task.description}}"), BarColumn(), MofNCompleteColumn()]
    if fields:
        columns.append(TextColumn(fields))
    return Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled)
