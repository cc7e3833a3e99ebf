"""Printing and saving the resolved config."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich import print as rprint
from rich.tree import Tree
from rich.syntax import Syntax


def config_tree(cfg: DictConfig) -> Tree:
    """A rich tree: one branch per top-level group, its YAML inside."""
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(f"[bold]{key}[/bold]")
        if isinstance(value, DictConfig):
            branch.add(Syntax(OmegaConf.to_yaml(value, resolve=True), "yaml", theme="ansi_dark"))
        else:
            branch.add(repr(value) if not OmegaConf.is_config(value) else str(OmegaConf.to_container(value, resolve=True)))
    return tree


def print_config(cfg: DictConfig) -> None:
    """Print :func:`config_tree` of ``cfg`` to the terminal."""
    rprint(config_tree(cfg))


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config as YAML to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
