"""Loggers: W&B offline receives scalars, the config and the prediction GIF; `none` logs nothing."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from PIL import Image

from futurelat.utils.run_logger import NoLogger, WandbLogger, build_logger


def test_none_and_non_main_ranks_get_no_logger(tmp_path):
    cfg = OmegaConf.create({"logger": {"name": "none"}})
    assert type(build_logger(cfg, tmp_path)) is NoLogger
    cfg = OmegaConf.create({"logger": {"name": "wandb", "mode": "offline", "project": "p"}})
    assert type(build_logger(cfg, tmp_path, is_main=False)) is NoLogger


def test_unknown_logger_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown logger.name 'tensorboard'"):
        build_logger(OmegaConf.create({"logger": {"name": "tensorboard"}}), tmp_path)


def test_wandb_offline_run_holds_scalars_config_and_gif(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = OmegaConf.create({"logger": {"name": "wandb", "mode": "offline", "project": "futurelat-test",
                                       "entity": None, "group": None, "tags": []},
                            "seed": 3})
    logger = build_logger(cfg, tmp_path, name="t")
    assert isinstance(logger, WandbLogger)
    assert logger.run.config["seed"] == 3
    frames = [Image.new("L", (8, 8), color=c) for c in (0, 255)]
    gif = tmp_path / "p.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], loop=0)
    logger.log_metrics({"backbone/loss": 0.5}, step=300)
    logger.log_metrics({"head/loss": 1.5}, step=1)  # a later stage restarts its step count
    logger.log_media("eval/predictions_gif", gif)
    logger.log_summary({"test/mse": 12.0})
    assert logger.run.summary["test/mse"] == 12.0
    assert logger.run.summary["head/loss"] == 1.5 and logger.run.summary["head/step"] == 1
    logger.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list(runs[0].rglob("*.gif")), "the GIF file should be stored with the run"


@pytest.mark.parametrize("resume", ["auto", False])
def test_a_resumed_run_continues_its_wandb_run(tmp_path, monkeypatch, resume):
    """The run id is kept in the run directory: a resumed job (trainer.resume auto/true) logs to the same
    W&B run, one started fresh (false) to a new one."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = OmegaConf.create({"logger": {"name": "wandb", "mode": "offline", "project": "futurelat-test",
                                       "entity": None, "group": None, "tags": []},
                            "trainer": {"resume": resume}})
    first = build_logger(cfg, tmp_path, name="t")
    first.log_metrics({"head/loss": 1.0}, step=5)
    first.finish(preempted=True)
    assert (tmp_path / "wandb_run_id").read_text().strip() == first.run.id
    again = build_logger(cfg, tmp_path, name="t")
    again.log_metrics({"head/loss": 0.5}, step=6)
    again.finish()
    assert (again.run.id == first.run.id) is (resume == "auto")
    assert (tmp_path / "wandb_run_id").read_text().strip() == again.run.id
