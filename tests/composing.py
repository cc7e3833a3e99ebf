"""Compose the real configs in configs/ as ``python -m futurelat.main`` would, for tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from futurelat.config import check_config, register_configs

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))

register_configs()


def debug_overrides(name: str) -> list[str]:
    """``configs/debug/<name>.yaml`` as ``key=value`` overrides (its ``override /group: option``
    entries as ``group=option``; nested defaults left out).

    Overrides win over every preset whatever their order, where ``+debug=NAME`` merges in the order
    it is given (after a ``+experiment=`` it comes before, before it after); so the tests' shrink is
    the debug config's content passed as overrides, and ``+debug=tiny`` as users type it composes to
    the same job (tests/config/test_tree.py)."""
    raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "debug" / f"{name}.yaml"))
    groups = [f"{k.removeprefix('override /')}={v}" for d in raw.pop("defaults", [])
              if isinstance(d, dict) for k, v in d.items() if k.startswith("override /")]

    def flat(node: dict, prefix: str = "") -> list[str]:
        out = []
        for key, value in node.items():
            if isinstance(value, dict):
                out += flat(value, f"{prefix}{key}.")
            else:
                out.append(f"{prefix}{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}")
        return out

    return groups + flat(raw)


#: configs/debug/tiny.yaml (and its Moving MNIST part): shrinks any job to seconds: tiny heads, 2 steps,
#: 4 test sequences, CPU, no tracker.
TINY_COMMON = debug_overrides("tiny") + debug_overrides("dataset/moving_mnist")
#: Per backbone config: configs/debug/backbone/<name>.yaml (vjepa2_tiny is tiny already).
TINY_BACKBONE = {name: debug_overrides(f"backbone/{name}") for name in ("vqvae", "magvit2_fsq")}
#: The default job (vqvae) made tiny: ``+debug=tiny`` as overrides.
TINY = TINY_COMMON + TINY_BACKBONE["vqvae"]


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """``configs/main.yaml`` composed with Hydra ``overrides`` (and the ``hydra`` node if asked),
    checked as ``python -m futurelat.main`` checks it (:func:`futurelat.config.check_config`)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="main", overrides=list(overrides or []), return_hydra_config=return_hydra_config)
    return check_config(cfg)


def tiny_config(extra: list[str] | None = None) -> DictConfig:
    """The default config with :data:`TINY_COMMON` overrides and the chosen backbone's
    :data:`TINY_BACKBONE` overrides (the backbone named by a ``backbone=NAME`` in ``extra``, else
    vqvae), then ``extra``."""
    extra = list(extra or [])
    backbone = next((o.split("=", 1)[1] for o in reversed(extra) if o.startswith("backbone=")), "vqvae")
    return compose_config(TINY_COMMON + TINY_BACKBONE.get(backbone, []) + extra)
