"""notebooks/quickstart.ipynb, executed with nbclient on a tiny run of ``python -m futurelat.main``."""

from __future__ import annotations

import json
import os

import nbclient  # the dev extra installs nbclient, nbformat and ipykernel
import nbformat
import pytest

from composing import ROOT
from running import CI_ENV

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def _execute(monkeypatch, run_dir) -> list:
    """Execute the notebook (kernel cwd: notebooks/, importing this checkout) with
    ``FUTURELAT_RUN_DIR=run_dir``; returns its executed cells. Raises nbclient's CellExecutionError."""
    for key, value in CI_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUTURELAT_RUN_DIR", str(run_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return nb.cells


def _text(cells) -> str:
    return "".join(out.get("text", "") for cell in cells if cell.cell_type == "code" for out in cell.outputs)


def test_quickstart_runs_on_a_finished_run(tiny_run, monkeypatch):
    run_dir = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())

    cells = _execute(monkeypatch, run_dir)
    text = _text(cells)
    assert f"backbone (vqvae): {run_dir / 'checkpoints' / 'backbone_final.pt'}" in text
    assert f"head (mamba): {run_dir / 'checkpoints' / 'head_final.pt'}" in text
    # The metrics table: the model beside both baselines, the values of metrics.json.
    for label, prefix in (("model", "test"), ("copy last frame", "test/copy_last"), ("black frames", "test/zeros")):
        row = f"{label:<20}" + "".join(f"{metrics[f'{prefix}/{m}']:>10.4g}" for m in ("mse", "mae", "ssim", "psnr"))
        assert row in text, (row, text)
    assert "rollout (1, 10, " in text
    images = [out for cell in cells if cell.cell_type == "code" for out in cell.outputs
              if "image/png" in out.get("data", {})]
    assert len(images) == 3  # predictions.png, curves.png, the rollout
    assert "predictions.png\n" in text and "curves.png\n" in text


def test_quickstart_without_a_run_stops_with_the_command_to_make_one(tmp_path, monkeypatch):
    missing = tmp_path / "no_run_here"
    with pytest.raises(nbclient.exceptions.CellExecutionError) as err:
        _execute(monkeypatch, missing)
    message = str(err.value)
    assert "FileNotFoundError" in message and f"no run directory at {missing}" in message
    assert f"python -m futurelat.main hydra.run.dir={missing}" in message
