"""A typo'd or mistyped config key stops the run before training, and the message names the key."""

from __future__ import annotations

import re

import pytest
from hydra.errors import ConfigCompositionException

from composing import ROOT, TINY, compose_config
from running import run_main

#: ``+key=value`` appends: Hydra lifts the struct flag for them, futurelat.config.check_config refuses them.
APPENDED = ["+trainer.no_such_key=1", "+trainer.head.no_such_key=1", "+eval.no_such_key=1",
            "+dataset.imag_size=3", "+backbone.params.hidden_chanels=3", "+head.params.d_modle=3",
            "+cache.no_such_key=1", "+logger.no_such_key=1", "+head.params.sampling.temprature=2"]


@pytest.mark.parametrize("override", APPENDED)
def test_appended_unknown_key_is_refused_with_its_full_name(override):
    key = re.escape(override[1:].split("=")[0])
    with pytest.raises(ValueError, match=rf"unknown key\(s\) {key} \(not in \w+\); valid keys: "):
        compose_config([override])


@pytest.mark.parametrize("override", ["dataset.imag_size=3", "backbone.params.hidden_chanels=3",
                                      "head.params.d_modle=3", "trainer.head.max_stepz=3", "eval.batch_sise=3"])
def test_overridden_unknown_key_is_refused_by_hydra(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=f"Could not override '{key}'"):
        compose_config([override])


@pytest.mark.parametrize(("override", "expected"), [
    ("head.params.d_model=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("trainer.head.lr=fast", "Value 'fast' of type 'str' could not be converted to Float"),
    ("dataset.context_frames=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
    ("eval.backbone_predictor=sometimes", "Value 'sometimes' is not a valid bool"),
])
def test_wrong_type_is_refused_naming_the_key(override, expected):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config([override])
    message = f"{err.value}\n{err.value.__cause__}"
    assert f"Error merging override {override}" in message and expected in message


def test_typo_in_a_preset_file_is_refused(tmp_path):
    """Presets are merged into the schemas too: a key the schema lacks fails the composition."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\nhead:\n  params:\n    d_modle: 3\n")
    with pytest.raises(ConfigCompositionException) as err:
        compose_config([f"hydra.searchpath=[file://{tmp_path}]", "+experiment=typo"])
    assert "Key 'd_modle' not in 'MambaParams'" in f"{err.value}\n{err.value.__cause__}"


@pytest.mark.parametrize(("override", "expected"), [
    ("+trainer.no_such_key=1", "unknown key(s) trainer.no_such_key (not in TrainerSettings)"),
    ("+trainer.head.no_such_key=1", "unknown key(s) trainer.head.no_such_key (not in StageSchedule)"),
    ("+eval.no_such_key=1", "unknown key(s) eval.no_such_key (not in EvalConfig)"),
])
def test_run_stops_before_training(tmp_path, override, expected):
    """``futurelat.main.run`` (what the CLI calls after composing) refuses the key before any stage."""
    from futurelat.main import run

    with pytest.raises(ValueError) as err:
        run(compose_config([*TINY, override]), tmp_path)
    assert expected in str(err.value)
    assert not any(tmp_path.iterdir())  # no config.yaml, checkpoint or log written


@pytest.mark.parametrize(("override", "expected"), [
    ("+trainer.head.no_such_key=1", "unknown key(s) trainer.head.no_such_key (not in StageSchedule)"),
    ("head.params.d_model=abc", "Error merging override head.params.d_model=abc"),
])
def test_main_stops_before_training(tmp_path, override, expected):
    """The command line: exit status 1, the key named on stderr, nothing trained."""
    result = run_main([*TINY, f"hydra.run.dir={tmp_path}", override], cwd=ROOT)
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "train_log.jsonl").exists()
