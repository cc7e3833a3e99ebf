"""The frozen backbone a cache is written with, and ``cache_info.json``: what the cache holds, checked on every re-run.

The on-disk format is documented in :mod:`futurelat.datasets.latent_cache`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from futurelat.datasets.latent_cache import FORMAT_VERSION, INFO_NAME, load_cache_info, spec_to_dict
from futurelat.models.base import Backbone, LatentSpec
from futurelat.models.latent_video_model import build_backbone
from futurelat.training.config_match import load_checked_weights


def build_frozen_backbone(cfg: DictConfig) -> tuple[Backbone, LatentSpec]:
    """The configured backbone, with ``backbone.checkpoint`` loaded, frozen; and its spec for ``dataset.image_size``.

    Raises:
        ValueError: a trainable backbone (e.g. ``vqvae``) without ``backbone.checkpoint``.
        ValueError: the checkpoint's stored config defines another backbone (``load_checked_weights``).
        FileNotFoundError / KeyError / RuntimeError: from ``load_module_weights`` (bad checkpoint).
    """
    backbone = build_backbone(cfg)
    if cfg.backbone.get("checkpoint"):
        load_checked_weights(cfg, "backbone", backbone)
    elif backbone.trainable:
        raise ValueError(f"backbone '{cfg.backbone.name}' is trained by futurelat (stage 1) and has no "
                         "backbone.checkpoint: caching random weights is useless. Set "
                         "backbone.checkpoint=<run_dir>/checkpoints/backbone_final.pt")
    size = int(cfg.dataset.image_size)
    return backbone.freeze(), backbone.latent_spec((size, size))


def make_cache_info(cfg: DictConfig, spec: LatentSpec, dtype: str) -> dict[str, Any]:
    """The ``cache_info.json`` content for ``cfg`` (without ``splits``, added per split)."""
    frames_per_clip = int(cfg.dataset.context_frames) + int(cfg.dataset.future_frames)
    if frames_per_clip % spec.temporal_downsample and not spec.first_frame_alone:
        raise ValueError(f"dataset.context_frames + dataset.future_frames = {frames_per_clip} is not a multiple of "
                         f"backbone '{cfg.backbone.name}' temporal downsampling ({spec.temporal_downsample})")
    latent_frames = spec.latent_frames(frames_per_clip, "dataset.context_frames + dataset.future_frames",
                                       f"backbone '{cfg.backbone.name}'")
    checkpoint = cfg.backbone.get("checkpoint")
    return {
        "format": FORMAT_VERSION,
        "backbone": {"name": str(cfg.backbone.name),
                     "params": OmegaConf.to_container(cfg.backbone.get("params") or {}, resolve=True),
                     "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None},
        "spec": spec_to_dict(spec),
        "latent_shape": [latent_frames, spec.tokens_per_frame, spec.latent_dim],
        "frames_per_clip": frames_per_clip,
        "dtype": dtype,
        "source": OmegaConf.to_container(cfg.dataset.source, resolve=True),
        "splits": {},
    }


def merge_info(root: Path, info: dict[str, Any], split: str, source_items: int) -> dict[str, Any]:
    """``info`` plus ``split``'s source length, checked against an existing ``cache_info.json``.

    Raises:
        ValueError: the existing cache was written with another backbone, spec, dtype, clip length or
            source (the message lists the differing keys and both values).
    """
    info = {**info, "splits": {split: {"source_items": source_items}}}
    if not (root / INFO_NAME).is_file():
        return info
    old = load_cache_info(root)
    diffs = [f"{key}: cached {old.get(key)!r}, now {info[key]!r}" for key in info
             if key != "splits" and old.get(key) != info[key]]
    old_split = old.get("splits", {}).get(split)
    if old_split is not None and old_split != info["splits"][split]:
        diffs.append(f"splits.{split}: cached {old_split}, now {info['splits'][split]} (the source changed, "
                     "so its indices may name other videos)")
    if diffs:
        raise ValueError(f"{root / INFO_NAME} was written by a different configuration: " + "; ".join(diffs)
                         + f". Cache into another dataset.dir, or delete {root / INFO_NAME} to reuse the "
                         "clips already there")
    return {**info, "splits": {**old.get("splits", {}), **info["splits"]}}


def write_info(root: Path, info: Mapping[str, Any]) -> None:
    """Write ``root/cache_info.json`` atomically (temporary file, then ``os.replace``)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{INFO_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, root / INFO_NAME)
