"""Checks beside Hydra's: keys appended to a schema node, and plain dicts read through a schema.

OmegaConf refuses unknown keys in YAML files and in ``key=value`` overrides while Hydra composes,
but Hydra appends ``+key=value`` overrides with the struct flag lifted, so ``+trainer.no_such_key=1``
composes. :func:`check_config` finds such keys before anything runs. :func:`merge_schema` reads a
config or a partial dict (tests, Python callers) through a schema, so it gets the schema's defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


def check_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` unchanged, after checking that every node typed by a schema dataclass has only its keys
    (the ``hydra`` node aside).

    Raises:
        ValueError: ``unknown key(s) <full.key>, ... (not in <Schema>); valid keys: ...``.
    """
    for key in cfg.keys():
        child = cfg._get_node(key)
        if key != "hydra" and isinstance(child, (DictConfig, ListConfig)):  # Hydra checks its own node
            _check(child, f"{key}.")
    return cfg


def _check(node: DictConfig | ListConfig, prefix: str) -> None:
    if node._is_none() or node._is_missing() or node._is_interpolation():
        return
    if isinstance(node, ListConfig):
        for i, item in enumerate(_items(node)):
            if isinstance(item, (DictConfig, ListConfig)):
                _check(item, f"{prefix.rstrip('.')}[{i}].")
        return
    schema = OmegaConf.get_type(node)
    if schema is not None and dataclasses.is_dataclass(schema):
        valid = [f.name for f in dataclasses.fields(schema)]
        unknown = [k for k in node.keys() if k not in valid]
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(prefix + str(k) for k in unknown)} (not in "
                             f"{schema.__name__}); valid keys: {', '.join(valid)}")
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)):
            _check(child, f"{prefix}{key}.")


def _items(node: ListConfig) -> list:
    return [node._get_node(i) for i in range(len(node))]


def merge_schema(schema: type, cfg: Mapping[str, Any] | DictConfig | None, prefix: str) -> Any:
    """``cfg`` (a ``DictConfig``, resolved first, or a partial dict) over the defaults of ``schema``,
    as a ``schema`` instance: the one way code that is also called with plain dicts reads a config.

    Raises:
        ValueError: an unknown key (``unknown <prefix> key <prefix>.<key>``, with the valid keys) or a
            value of the wrong type; the message names ``<prefix>.<key>``.
    """
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except ConfigKeyError as err:
        key = getattr(err, "full_key", None) or ""
        valid = "" if "." in key else f"; valid keys: {', '.join(f.name for f in dataclasses.fields(schema))}"
        raise ValueError(f"unknown {prefix} key {prefix}.{key} (not in {schema.__name__}){valid}") from err
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or ""
        msg = (getattr(err, "msg", None) or str(err)).splitlines()[0]
        raise ValueError(f"{prefix}.{key}: {msg}" if key else f"{prefix}: {msg}") from err
