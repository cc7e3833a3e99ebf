"""curves.png: train_log.jsonl drawn as one row of panels per stage."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from futurelat.evaluation.curves import CURVES_FILE, LOG_FILE, plot_curves, read_train_log, write_curves


def _line(stage: str, step: int, **metrics: float) -> str:
    return json.dumps({"stage": stage, "step": step, **{f"{stage}/{k}": v for k, v in metrics.items()}})


def _write_log(path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_read_train_log_keeps_the_last_line_of_a_step_and_skips_cut_lines(tmp_path):
    """A resumed stage logs again the steps after its checkpoint: each step is drawn once, with the
    resumed run's value; a line cut short by a crash is skipped."""
    _write_log(tmp_path / LOG_FILE, [
        _line("backbone", 1, loss=4.0, lr=0.1, codebook_usage=0.5, samples_per_s=9.0),
        _line("backbone", 2, loss=3.0, lr=0.2, codebook_usage=0.6),
        _line("backbone", 3, loss=2.5, lr=0.2)[:20],        # crashed mid-write
        _line("backbone", 3, loss=2.0, lr=0.2, codebook_usage=0.7),
        _line("backbone", 2, loss=2.9, lr=0.2, codebook_usage=0.65),  # resumed from step 1
        _line("head", 1, loss=7.0, lr=0.01),
    ])
    curves = read_train_log(tmp_path / LOG_FILE)
    assert list(curves) == ["backbone", "head"]
    assert curves["backbone"]["loss"] == [(1, 4.0), (2, 2.9), (3, 2.0)]
    assert curves["backbone"]["codebook_usage"] == [(1, 0.5), (2, 0.65), (3, 0.7)]
    assert curves["backbone"]["samples_per_s"] == [(1, 9.0)]
    assert curves["head"] == {"loss": [(1, 7.0)], "lr": [(1, 0.01)]}


def test_curves_png_has_a_row_per_stage_and_a_codebook_panel_only_where_logged(tmp_path):
    _write_log(tmp_path / LOG_FILE, [
        *(_line("backbone", s, loss=1.0 / s, lr=1e-3, codebook_usage=0.1 * s, perplexity=2.0 * s)
          for s in range(1, 6)),
        *(_line("head", s, loss=5.0 - s, lr=1e-4) for s in range(1, 4)),
    ])
    path = write_curves(tmp_path)
    assert path == tmp_path / CURVES_FILE
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.text["Description"] == "backbone: loss, learning rate, codebook; head: loss, learning rate"
        assert img.size == (1260, 580)  # 3 panel columns x 2 stage rows


def test_no_training_log_writes_no_picture(tmp_path):
    assert write_curves(tmp_path) is None  # an eval-only run
    _write_log(tmp_path / LOG_FILE, [_line("head", 1, samples_per_s=3.0)])
    assert write_curves(tmp_path) is None and not (tmp_path / CURVES_FILE).exists()
    with pytest.raises(ValueError, match="nothing to draw"):
        plot_curves(read_train_log(tmp_path / LOG_FILE), tmp_path / CURVES_FILE)
