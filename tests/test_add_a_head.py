"""README.md's "Add a head", followed as written: the example head file copied into a package of
one's own, the README's YAML in a config directory, ``python -m futurelat.main head=last_frame_mlp``."""

from __future__ import annotations

import json
import math
import os
import re
import shutil

from composing import ROOT, TINY
from running import run_main


def readme_head_yaml() -> tuple[str, str]:
    """(file name, text) of the YAML block of README's "Add a head" part."""
    part = (ROOT / "README.md").read_text().split("**Add a head.**", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", part, flags=re.S).group(1)
    name = re.match(r"# configs/head/(\S+\.yaml)\n", block).group(1)
    return name, block


def test_the_readme_adds_a_head_in_one_file_and_one_yaml(tmp_path):
    package = tmp_path / "my_heads"
    package.mkdir()
    shutil.copy(ROOT / "examples" / "heads" / "last_frame_mlp.py", package / "last_frame_mlp.py")
    name, text = readme_head_yaml()
    (tmp_path / "configs" / "head").mkdir(parents=True)
    (tmp_path / "configs" / "head" / name).write_text(text)

    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = run_main([*TINY, f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "head=last_frame_mlp",
                       f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = (run_dir / "config.yaml").read_text()
    assert "name: my_heads.last_frame_mlp:LastFrameMLPHead" in saved and "num_layers: 1" in saved
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test/mse"]) and "test/copy_last/mse" in metrics
    assert (run_dir / "checkpoints" / "head_final.pt").exists()
