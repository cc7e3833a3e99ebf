"""``python -m futurelat.cache``: encode a raw dataset once with a frozen backbone; heads then train from the cache.

    # Kinetics-400 -> V-JEPA 2 latents (the experiment composes dataset=kinetics_400_cached)
    python -m futurelat.cache +experiment=NAME
    torchrun --nproc_per_node 8 -m futurelat.cache +experiment=NAME      # DDP: rank r encodes items r::world
    # Moving MNIST -> latents of a trained VQ-VAE
    python -m futurelat.cache dataset=kinetics_400_cached dataset@dataset.source=moving_mnist \\
        backbone.checkpoint=RUN_DIR/checkpoints/backbone_final.pt cache.dtype=float32
    # then train a head on the cache: an experiment (or override) with dataset=kinetics_400_cached
    python -m futurelat.main +experiment=NAME stages=[head,evaluate] backbone.checkpoint=...

Design
------
A cached dataset is a dataset config with two extra keys (``configs/dataset/kinetics_400_cached.yaml``):

- ``source``: the raw dataset config the frames come from, composed by Hydra from the ``dataset`` group
  (default ``kinetics_400``; choose another with ``dataset@dataset.source=moving_mnist``);
- ``dir``: the cache directory (default ``data/latent_cache/<source name>/<backbone name>``).

Its ``image_size``, ``channels``, ``context_frames`` and ``future_frames`` are interpolated from ``source``,
so ``build_model`` sizes the backbone and head as for the raw dataset. This command reads ``dataset.source``
and writes into ``dataset.dir``; training reads ``dataset.dir`` through
:class:`futurelat.datasets.latent_cache.LatentCacheDataset` (``dataset.name: kinetics_400_cached``). The
on-disk format is documented in :mod:`futurelat.datasets.latent_cache`.

The backbone is built from ``backbone`` as for training. With ``backbone.checkpoint`` set, its weights are
loaded (``load_checked_weights``, e.g. a ``backbone_final.pt``, refused if the config stored in it defines
another backbone; ``backbone.allow_config_mismatch=true`` accepts it); without one a backbone that futurelat
trains (``trainable = True``, e.g. ``vqvae``) is refused (random weights make a useless cache), while a
frozen pretrained backbone (e.g. V-JEPA 2) is used as it builds itself. It is frozen and run in eval mode
under ``no_grad``.

Config keys (``cache:``, ``configs/cache/default.yaml``; defaults in :class:`futurelat.config.run.CacheConfig`):

=================  ==================  ==========================================================
key                default             meaning
=================  ==================  ==========================================================
``splits``         ``[train, test]``   source splits to cache
``batch_size``     8                   clips per ``backbone.encode`` call
``num_workers``    4                   DataLoader workers decoding source items
``dtype``          ``float16``         storage dtype of ``latents``: ``float16`` | ``bfloat16`` |
                                       ``float32``. float16 halves the disk of large continuous
                                       latents (V-JEPA 2 ViT-L, 16 frames at 256²: 8x256x1024 →
                                       4 MiB instead of 8 MiB per clip; ~1 TB for Kinetics-400
                                       train) at a relative rounding error ≤ 2^-11; a value
                                       beyond float16's range (±65504) stops the run. Codes are
                                       always exact (int64). Use float32 for small latents.
``max_items``      ``null``            cache only the first K items of each split
``device``         ``trainer.device``  ``auto`` | ``cpu`` | ``cuda``
``precision``      ``trainer.precision``  autocast of the encoder: ``fp32`` | ``bf16`` | ``fp16``
``progress``       ``trainer.progress``   rich progress bar (rank 0)
=================  ==================  ==========================================================

Resume, failures, DDP
---------------------
- A clip whose file already exists and is complete (its safetensors header parses, its size matches, its
  shapes are the expected ``(T', N, D)``) is skipped without decoding the video. Files are written to a
  temporary name and ``os.replace``-d, so a killed run never leaves a half file that looks done.
- ``dir/cache_info.json`` records the backbone (name, params, checkpoint), latent spec and shape, dtype,
  frames per clip, the source config and each split's source length. A re-run with a different one is
  refused (mixing latents of two backbones in one cache would be silent garbage).
- An item whose decoding or encoding raises is listed in ``dir/<split>_failed.csv`` (index, video,
  error) and skipped; the next run retries it. A run in which every item fails stops with an error.
- Rank ``r`` of ``w`` handles items ``r::w`` (:func:`~futurelat.caching.encode.shard_indices`) and writes
  ``<split>.rank{r}.csv`` and ``<split>_failed.rank{r}.csv``; after a barrier rank 0 merges them, sorted
  by index, into ``<split>.csv`` and ``<split>_failed.csv`` and deletes the partial files. The CSV is
  rebuilt from every item of the run (cached before or now), so it never holds duplicates.

The parts live in :mod:`futurelat.caching`: the frozen backbone and ``cache_info.json`` in
:mod:`futurelat.caching.info`, encoding one split in :mod:`futurelat.caching.encode`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from futurelat.caching.encode import DTYPES, SplitSummary, cache_split, merge_partial_csvs, shard_indices
from futurelat.caching.info import build_frozen_backbone, make_cache_info, merge_info, write_info
from futurelat.config import check_config, register_configs
from futurelat.config.check import merge_schema
from futurelat.config.run import CacheConfig
from futurelat.datasets import build_dataset
from futurelat.datasets.latent_cache import FAILED_COLUMNS, failed_csv_path, is_latent_cache, read_csv, shape_str
from futurelat.training.distributed import (DistInfo, all_gather_objects, barrier, init_distributed,
                                            resolve_device)
from futurelat.utils import launch_time
from futurelat.utils.precision import PRECISIONS

log = logging.getLogger(__name__)
launch_time.register()  # ${launch_time:...} in hydra.run.dir: one run directory for all torchrun ranks
register_configs()  # the schemas (base_*) that configs/ builds on: futurelat/config/

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
SPLITS = ("train", "test")


# --------------------------------------------------------------------------- settings and results


class CacheSettings(CacheConfig):
    """The validated ``cache:`` config block: :class:`futurelat.config.run.CacheConfig`, the schema
    that holds the keys' defaults, with the checks its types cannot express."""

    @property
    def precision_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``precision`` (``None`` for fp32)."""
        return PRECISIONS[self.precision]

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | DictConfig) -> "CacheSettings":
        """``cache`` (a config or a partial dict; missing keys take the schema's defaults) as settings.

        Raises:
            ValueError: an unknown key or a value of the wrong type (named, as
                :func:`~futurelat.config.check.merge_schema` does), or a bad value, naming its
                ``cache.*`` key.
        """
        s = merge_schema(cls, cfg, "cache")
        if not s.splits or any(split not in SPLITS for split in s.splits):
            raise ValueError(f"cache.splits must be a non-empty subset of {list(SPLITS)}; got {list(s.splits)}")
        if s.batch_size < 1 or s.num_workers < 0:
            raise ValueError(f"cache.batch_size must be >= 1 and cache.num_workers >= 0; "
                             f"got {s.batch_size} and {s.num_workers}")
        if s.dtype not in DTYPES:
            raise ValueError(f"cache.dtype must be one of {list(DTYPES)}; got {s.dtype!r}")
        if s.precision not in PRECISIONS:
            raise ValueError(f"cache.precision must be one of {list(PRECISIONS)}; got {s.precision!r}")
        if s.max_items is not None and s.max_items < 1:
            raise ValueError(f"cache.max_items must be null or >= 1; got {s.max_items}")
        return s


# --------------------------------------------------------------------------- the command


def run_cache(cfg: DictConfig, dist: DistInfo | None = None) -> dict[str, SplitSummary]:
    """Cache ``cfg.cache.splits`` of ``cfg.dataset.source`` into ``cfg.dataset.dir``.

    Returns:
        ``{split: SplitSummary}`` summed over ranks (every rank returns it).

    Raises:
        ValueError: ``cfg.dataset`` is not a cached dataset config; bad ``cache.*`` values; a trainable
            backbone without checkpoint; a cache dir written by another configuration; latents that do
            not match the backbone's spec or overflow ``cache.dtype``.
        RuntimeError: every item of a split failed (the message shows the first error).
    """
    if not is_latent_cache(cfg.dataset):
        raise ValueError(f"dataset '{cfg.dataset.name}' is a raw dataset; the cache command needs a cached dataset "
                         "config with `source` and `dir` keys, e.g. dataset=kinetics_400_cached "
                         "(and dataset@dataset.source=moving_mnist for Moving MNIST)")
    settings = CacheSettings.from_cfg(cfg.cache)
    dist = dist or init_distributed(settings.device)
    device = dist.device if settings.device == "auto" else resolve_device(settings.device, dist.local_rank)
    if settings.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"cache.precision=fp16 needs CUDA; device is {device}. Use bf16 or fp32")
    backbone, spec = build_frozen_backbone(cfg)
    backbone.to(device)
    info = make_cache_info(cfg, spec, settings.dtype)
    root = Path(cfg.dataset.dir)
    latent_shape = tuple(info["latent_shape"])
    size = int(cfg.dataset.image_size)
    frame_shape = (info["frames_per_clip"], int(cfg.dataset.channels), size, size)
    if dist.is_main:
        log.info("caching %s with backbone '%s' into %s: latents %s per clip, %s", cfg.dataset.source.name,
                 cfg.backbone.name, root, shape_str(latent_shape), settings.dtype)

    summaries = {}
    for split in settings.splits:
        source = build_dataset(cfg.dataset.source, split)
        if hasattr(source, "replace_unreadable"):  # e.g. Kinetics: a bad video is a failure here, not a stand-in clip
            source.replace_unreadable = False
        num_items = len(source) if settings.max_items is None else min(len(source), settings.max_items)
        split_info = merge_info(root, info, split, len(source))  # every rank checks: all fail alike
        if dist.is_main:
            write_info(root, split_info)
            for stale in (root / split).rglob("*.tmp") if (root / split).is_dir() else ():
                stale.unlink(missing_ok=True)  # temp files of a killed run
        barrier(dist)
        mine = cache_split(backbone, source, root, split, shard_indices(num_items, dist.rank, dist.world_size),
                           latent_shape=latent_shape, frame_shape=frame_shape, discrete=spec.discrete,
                           settings=settings, device=device, rank=dist.rank,
                           show_progress=dist.is_main and settings.progress)
        barrier(dist)
        if dist.is_main:
            merge_partial_csvs(root, split, dist.world_size)
        summaries[split] = _sum(all_gather_objects(mine, dist), split)
        barrier(dist)
        if summaries[split].failed and not summaries[split].written and not summaries[split].skipped:
            first = read_csv(failed_csv_path(root, split), FAILED_COLUMNS)[:1]
            raise RuntimeError(f"every item of split '{split}' failed (see {failed_csv_path(root, split)}); "
                               f"first: {first[0]['error'] if first else '?'}")
    if dist.is_main:
        _print_summary(summaries, root)
    return summaries


def _sum(parts: list[SplitSummary], split: str) -> SplitSummary:
    return SplitSummary(split, total=sum(p.total for p in parts), written=sum(p.written for p in parts),
                        skipped=sum(p.skipped for p in parts), failed=sum(p.failed for p in parts),
                        seconds=max((p.seconds for p in parts), default=0.0))


def _print_summary(summaries: Mapping[str, SplitSummary], root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"latent cache {root}")
    for col in ("split", "clips", "written", "already cached", "failed", "clips/s", "time"):
        table.add_column(col)
    for s in summaries.values():
        table.add_row(s.split, str(s.total), str(s.written), str(s.skipped), str(s.failed),
                      f"{s.clips_per_s:.1f}", f"{s.seconds:.1f} s")
    console = Console()
    console.print(table)
    for s in summaries.values():
        if s.failed:
            console.print(f"[yellow]{s.failed} failed item(s) of '{s.split}' listed in "
                          f"{failed_csv_path(root, s.split)}; re-run the same command to retry them")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="main")
def main(cfg: DictConfig) -> None:
    run_cache(check_config(cfg))


if __name__ == "__main__":
    main()
