"""``progress_bar``: one factory for the trainer's, the evaluators' and the cache command's bars."""

from __future__ import annotations

import io

from rich.console import Console

from futurelat.utils.progress import progress_bar


def _render(enabled: bool, fields: str | None = None, **task_fields) -> str:
    bar = progress_bar("train", enabled, fields)
    out = io.StringIO()
    bar.live.console = Console(file=out, force_terminal=False, width=160)
    with bar:
        task = bar.add_task("backbone", total=10, completed=3, **task_fields)
        bar.update(task, completed=4)
        bar.refresh()
    return out.getvalue()


def test_enabled_bar_shows_label_description_count_and_fields():
    text = _render(True, "loss {task.fields[loss]:.3f}", loss=0.25)
    assert "train backbone" in text and "4/10" in text and "loss 0.250" in text


def test_disabled_bar_prints_nothing():
    bar = progress_bar("evaluate", enabled=False)
    assert bar.disable
    assert _render(False) == ""
