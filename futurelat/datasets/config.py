"""Reading a ``configs/dataset/*.yaml`` config: defaults filled in, unknown keys rejected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def with_defaults(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A plain dict of ``cfg`` (a ``DictConfig`` is resolved) with missing keys taken from ``defaults``.

    Raises:
        ValueError: keys of ``cfg`` that ``defaults`` does not have; the message names them as
            ``dataset.<key>`` and lists the valid keys.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown dataset key(s) {', '.join('dataset.' + k for k in unknown)}; "
                         f"valid keys: {', '.join(defaults)}")
    return {**defaults, **dict(cfg)}


def require(cfg: Mapping[str, Any], key: str, ok: bool, what: str) -> None:
    """Raise ``ValueError("dataset.<key> must be <what>; got <value>")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"dataset.{key} must be {what}; got {cfg[key]!r}")
