"""A checkpoint's stored config against this run's: the keys that define the model must agree.

Many options leave a module's ``state_dict`` shapes unchanged (``head.params.target``
residual/absolute, ``position`` rope/sincos, ``prediction`` velocity/data), so a checkpoint loads
cleanly into a model built with another value and is scored silently wrong. Trainer checkpoints
store the resolved run config (``config_yaml``); before ``backbone.checkpoint`` or
``head.checkpoint`` is loaded, the model-defining keys of that config are compared with this run's:

- a backbone checkpoint: ``backbone.name`` and ``backbone.params``;
- a head checkpoint: ``head.name`` and ``head.params``, the backbone it was trained on
  (``backbone.name``, ``backbone.params``) and the clip that sizes the head
  (``dataset.image_size``, ``dataset.context_frames``, ``dataset.future_frames``).

Params that only steer training or numerics (:data:`NON_MODEL_PARAMS`: sampling settings,
dropout, losses, kernels, chunk sizes, cache paths) and ``checkpoint`` paths are not compared.
A difference is a ``ValueError`` naming each key with both values, unless
``<part>.allow_config_mismatch=true`` (then a warning); a checkpoint without a stored config is
loaded with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from futurelat.training.checkpoint import load_module_weights
from futurelat.training.ema import eval_weights_key

log = logging.getLogger(__name__)

#: The config nodes that define a backbone (``"backbone"``) or a head (``"head"``) checkpoint's model.
MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone.name", "backbone.params"),
    "head": ("head.name", "head.params", "backbone.name", "backbone.params",
             "dataset.image_size", "dataset.context_frames", "dataset.future_frames"),
}
#: ``params`` entries (of any backbone or head) that do not change the function a set of weights computes.
NON_MODEL_PARAMS = frozenset({
    "sampling",                                   # inference-time sampling (steps, temperature, guidance, ...)
    "dropout", "input_noise", "context_dropout", "scheduled_sampling", "unroll_frames",  # training-time regularisation
    "loss", "time_sampling", "pixel_loss_weight", "pixel_loss_frames", "pixel_ssim_weight",  # training objective
    "static_keep",
    "commitment_weight", "ema_decay", "kmeans_init", "dead_code_threshold",  # VQ-VAE codebook training
    "backend", "chunk_size", "query_chunk", "dtype", "max_search_bytes",  # kernels and numerics
    "cache_dir",                                  # where pretrained weights are found
})
ABSENT = "<absent>"
#: ``params`` keys renamed since a checkpoint may have been written: ``{old: new}``, read under the new name.
RENAMED_PARAMS = {"context_frames": "context_latents"}  # head.params, 2026-11-30: heads count latent frames
#: ``params`` keys added since a checkpoint may have been written: ``{name: the value that reproduces a
#: checkpoint without it}``; a stored config that lacks the key is compared as if it held that value.
ADDED_PARAMS = {"frame_decoding": "independent"}  # head.params, 2026-11-30: MaskGIT whole-frame decoding


def load_checked_weights(cfg: DictConfig, part: str, module: nn.Module) -> nn.Module:
    """Load ``cfg.<part>.checkpoint`` into ``module`` after :func:`check_stored_config`: its EMA weights
    when it has them and ``eval.weights`` is ``auto`` (the default) or ``ema``, else its trained weights.

    Args:
        cfg: this run's composed config. part: ``"backbone"`` or ``"head"``.

    Returns:
        ``module``, its weights overwritten.

    Raises:
        ValueError: the checkpoint's model config differs (see :func:`check_stored_config`), or
            ``eval.weights=ema`` and it has no EMA weights.
        FileNotFoundError / KeyError / RuntimeError: from :func:`load_module_weights`.
    """
    path = cfg[part].checkpoint
    choice = str(OmegaConf.select(cfg, "eval.weights", default="auto"))

    def key(ckpt: Mapping[str, Any]) -> str:
        chosen = eval_weights_key(choice, ckpt.get("ema_model") is not None, str(path))
        if chosen == "ema_model":
            log.info("%s: loading its EMA weights (eval.weights=%s; raw weights: eval.weights=raw)", path, choice)
        return chosen

    return load_module_weights(path, module, key=key, check=lambda ckpt: check_stored_config(ckpt, cfg, part, path))


def check_stored_config(ckpt: Mapping[str, Any], cfg: DictConfig, part: str, path: str | os.PathLike) -> None:
    """Compare the model-defining keys (:data:`MODEL_KEYS`) of ``ckpt["config_yaml"]`` with ``cfg``.

    Silent when they agree. Logs a warning when the checkpoint stores no config, or when they
    differ and ``cfg.<part>.allow_config_mismatch`` is true.

    Raises:
        ValueError: they differ: one line per key (full dotted name) with the checkpoint's and this
            run's value, and the override that accepts it.
    """
    stored_yaml = ckpt.get("config_yaml")
    if not stored_yaml:
        log.warning("%s checkpoint %s stores no config (config_yaml): cannot check that its model matches this "
                    "run's %s; make sure the overrides match the run that wrote it", part, path,
                    ", ".join(MODEL_KEYS[part]))
        return
    stored = OmegaConf.to_container(OmegaConf.create(stored_yaml), resolve=True)
    diffs = model_config_differences(stored, OmegaConf.to_container(cfg, resolve=True), part)
    if not diffs:
        return
    lines = "\n".join(f"  {key}: checkpoint {old!r}, this run {new!r}" for key, old, new in diffs)
    override = f"{part}.allow_config_mismatch=true"
    if cfg[part].get("allow_config_mismatch", False):
        log.warning("%s checkpoint %s was trained with another model config; loading it anyway (%s):\n%s",
                    part, path, override, lines)
        return
    raise ValueError(
        f"{part} checkpoint {path} was trained with another model config than this run's (its weights may load "
        f"cleanly and be scored as a different model):\n{lines}\nSet these keys as the checkpoint's "
        f"run did (its config.yaml, or config_yaml inside the checkpoint), or load it anyway with {override}")


def model_config_differences(stored: Mapping[str, Any], current: Mapping[str, Any],
                             part: str) -> list[tuple[str, Any, Any]]:
    """``(dotted key, stored value, current value)`` for each model-defining key of ``part`` that differs.

    A key missing on one side has the value :data:`ABSENT`, except a param of :data:`ADDED_PARAMS`
    missing from the stored side (it takes the value listed there); ``params`` entries in
    :data:`NON_MODEL_PARAMS` are skipped.
    """
    old, new = {}, {}
    for key in MODEL_KEYS[part]:
        old.update(_flatten(key, _select(stored, key)))
        new.update(_flatten(key, _select(current, key)))
    for key in new.keys() - old.keys():  # a param added after the checkpoint was written
        prefix, _, name = key.rpartition(".")
        if prefix.endswith(".params") and name in ADDED_PARAMS and any(k.startswith(prefix + ".") for k in old):
            old[key] = ADDED_PARAMS[name]
    return [(key, old.get(key, ABSENT), new.get(key, ABSENT)) for key in sorted(old.keys() | new.keys())
            if old.get(key, ABSENT) != new.get(key, ABSENT)]


def _select(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for name in dotted.split("."):
        if not isinstance(node, Mapping) or name not in node:
            return ABSENT
        node = node[name]
    return node


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    """``{"a.b.c": leaf}`` for the leaves under ``prefix``; ``params`` entries in NON_MODEL_PARAMS dropped."""
    if not isinstance(value, Mapping) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for name, child in value.items():
        if prefix.endswith(".params") and name in NON_MODEL_PARAMS:
            continue
        if prefix.endswith(".params"):
            name = RENAMED_PARAMS.get(name, name)
        flat.update(_flatten(f"{prefix}.{name}", child))
    return flat
