"""Dump the resolved config of every preset (and a few group choices) of a checkout, to diff two of them.

    python tests/config/dump_presets.py /path/to/old/checkout /tmp/old
    python tests/config/dump_presets.py . /tmp/new && diff -r /tmp/old /tmp/new

Keys are sorted, so only values and added/removed keys show up in the diff. A checkout with
futurelat/config/ registers its schemas first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml


def main(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    os.chdir(repo)
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    try:
        from futurelat.config import register_configs
    except ImportError:  # a checkout from before the schemas
        pass
    else:
        register_configs()
    jobs = {"default": []} | {p.stem: [f"+experiment={p.stem}"] for p in sorted((repo / "configs/experiment").glob("*.yaml"))}
    jobs |= {"hparams_search_mmnist": ["hparams_search=mmnist_optuna"], "dataset_toy_kinetics": ["dataset=toy_kinetics"],
             "dataset_kinetics_400": ["dataset=kinetics_400"], "cache_of_moving_mnist":
             ["dataset=kinetics_400_cached", "dataset@dataset.source=moving_mnist"], "backbone_vjepa2": ["backbone=vjepa2"],
             "backbone_vjepa2_tiny": ["backbone=vjepa2_tiny"], "head_transformer": ["head=transformer"],
             "head_flow_dit": ["head=flow_dit"], "logger_none": ["logger=none"]}
    out.mkdir(parents=True, exist_ok=True)
    for name, overrides in jobs.items():
        with initialize_config_dir(config_dir=str(repo / "configs"), version_base="1.3"):
            cfg = compose("main", overrides=overrides)
        (out / f"{name}.yaml").write_text(yaml.safe_dump(OmegaConf.to_container(cfg, resolve=True), sort_keys=True))
    print(f"{len(jobs)} configs in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
