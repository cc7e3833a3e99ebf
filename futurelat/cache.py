"""``python -m futurelat.cache``: encode a raw dataset once with a frozen backbone; heads then train from the cache.

    # Kinetics-400 -> V-JEPA 2 latents (the experiment composes dataset=kinetics_400_cached)
    python -m futurelat.cache +experiment=NAME
    torchrun --nproc_per_node 8 -m futurelat.cache +experiment=NAME      # DDP: rank r encodes items r::world
    # Moving MNIST -> latents of a trained VQ-VAE
    python -m futurelat.cache dataset=kinetics_400_cached dataset@dataset.source=moving_mnist \\
        backbone.checkpoint=RUN_DIR/checkpoints/tokenizer_final.pt cache.dtype=float32
    # then train a head on the cache: an experiment (or override) with dataset=kinetics_400_cached
    python -m futurelat.main +experiment=NAME stages=[predictor,evaluate] backbone.checkpoint=...

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
loaded (``load_checked_weights``, e.g. a ``tokenizer_final.pt``, refused if the config stored in it defines
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
- Rank ``r`` of ``w`` handles items ``r::w`` (:func:`shard_indices`) and writes ``<split>.rank{r}.csv``
  and ``<split>_failed.rank{r}.csv``; after a barrier rank 0 merges them, sorted by index, into
  ``<split>.csv`` and ``<split>_failed.csv`` and deletes the partial files. The CSV is rebuilt from
  every item of the run (cached before or now), so it never holds duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from futurelat.config import check_config, register_configs
from futurelat.config.run import CacheConfig
from futurelat.datasets import build_dataset
from futurelat.datasets.latent_cache import (CSV_COLUMNS, FAILED_COLUMNS, FORMAT_VERSION, INFO_NAME, clip_path,
                                             csv_path, failed_csv_path, is_latent_cache, load_cache_info,
                                             read_clip_header, read_csv, shape_str, spec_to_dict, write_clip,
                                             write_csv)
from futurelat.models.base import Backbone, LatentSpec
from futurelat.models.latent_video_model import build_backbone
from futurelat.training.config_match import load_checked_weights
from futurelat.training.distributed import (DistInfo, all_gather_objects, barrier, init_distributed,
                                            resolve_device)
from futurelat.utils import launch_time

log = logging.getLogger(__name__)
launch_time.register()  # ${launch_time:...} in hydra.run.dir: one run directory for all torchrun ranks
register_configs()  # the schemas (base_*) that configs/ builds on: futurelat/config/

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
SPLITS = ("train", "test")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------- settings and results


class CacheSettings(CacheConfig):
    """The validated ``cache:`` config block: :class:`futurelat.config.run.CacheConfig`, the schema
    that holds the keys' defaults, with the checks its types cannot express."""

    @property
    def precision_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``precision`` (``None`` for fp32)."""
        return AUTOCAST[self.precision]

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | DictConfig) -> "CacheSettings":
        """``cache`` (a config or a partial dict; missing keys take the schema's defaults) as settings.

        Raises:
            omegaconf's ``ConfigKeyError`` (a ``KeyError``) / ``ValidationError`` (a ``ValueError``):
                an unknown key / a value of the wrong type, named.
            ValueError: a bad value, naming its ``cache.*`` key.
        """
        c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        s = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), c))
        if not s.splits or any(split not in SPLITS for split in s.splits):
            raise ValueError(f"cache.splits must be a non-empty subset of {list(SPLITS)}; got {list(s.splits)}")
        if s.batch_size < 1 or s.num_workers < 0:
            raise ValueError(f"cache.batch_size must be >= 1 and cache.num_workers >= 0; "
                             f"got {s.batch_size} and {s.num_workers}")
        if s.dtype not in DTYPES:
            raise ValueError(f"cache.dtype must be one of {list(DTYPES)}; got {s.dtype!r}")
        if s.precision not in AUTOCAST:
            raise ValueError(f"cache.precision must be one of {list(AUTOCAST)}; got {s.precision!r}")
        if s.max_items is not None and s.max_items < 1:
            raise ValueError(f"cache.max_items must be null or >= 1; got {s.max_items}")
        return s


@dataclass
class SplitSummary:
    """What one run did for one split (summed over ranks by :func:`run_cache`).

    Attributes:
        total: items of the split handled by the run (after ``cache.max_items``).
        written: clips encoded and written now; ``skipped``: already cached; ``failed``: listed in the failed CSV.
        seconds: wall time of the encoding loop (the slowest rank after summing).
    """

    split: str
    total: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def clips_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def shard_indices(num_items: int, rank: int, world_size: int) -> range:
    """Source indices handled by ``rank`` of ``world_size``: ``rank, rank + world_size, ...`` below ``num_items``.

    The shards of all ranks are disjoint and cover ``range(num_items)``.

    Raises:
        ValueError: ``world_size < 1``, ``rank`` outside ``[0, world_size)`` or ``num_items < 0``.
    """
    if world_size < 1 or not 0 <= rank < world_size or num_items < 0:
        raise ValueError(f"bad shard: rank={rank}, world_size={world_size}, num_items={num_items}")
    return range(rank, num_items, world_size)


# --------------------------------------------------------------------------- backbone and cache_info


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
                         "backbone.checkpoint=<run_dir>/checkpoints/tokenizer_final.pt")
    size = int(cfg.dataset.image_size)
    return backbone.freeze(), backbone.latent_spec((size, size))


def make_cache_info(cfg: DictConfig, spec: LatentSpec, dtype: str) -> dict[str, Any]:
    """The ``cache_info.json`` content for ``cfg`` (without ``splits``, added per split)."""
    frames_per_clip = int(cfg.dataset.context_frames) + int(cfg.dataset.future_frames)
    if frames_per_clip % spec.temporal_downsample:
        raise ValueError(f"dataset.context_frames + dataset.future_frames = {frames_per_clip} is not a multiple of "
                         f"backbone '{cfg.backbone.name}' temporal downsampling ({spec.temporal_downsample})")
    checkpoint = cfg.backbone.get("checkpoint")
    return {
        "format": FORMAT_VERSION,
        "backbone": {"name": str(cfg.backbone.name),
                     "params": OmegaConf.to_container(cfg.backbone.get("params") or {}, resolve=True),
                     "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None},
        "spec": spec_to_dict(spec),
        "latent_shape": [frames_per_clip // spec.temporal_downsample, spec.tokens_per_frame, spec.latent_dim],
        "frames_per_clip": frames_per_clip,
        "dtype": dtype,
        "source": OmegaConf.to_container(cfg.dataset.source, resolve=True),
        "splits": {},
    }


def _merge_info(root: Path, info: dict[str, Any], split: str, source_items: int) -> dict[str, Any]:
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


def _write_info(root: Path, info: Mapping[str, Any]) -> None:
    import json

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{INFO_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, root / INFO_NAME)


# --------------------------------------------------------------------------- reading source items


class _Guarded(Dataset):
    """The source dataset, with an item's exception turned into a failure record.

    ``guarded[i]`` → ``{"index", "frames": (T, C, H, W), "label", "video"}``, or
    ``{"index", "video", "error"}`` when ``source[i]`` raises or its frames are not ``frame_shape``.
    """

    def __init__(self, source: Dataset, frame_shape: tuple[int, ...]):
        self.source = source
        self.frame_shape = frame_shape

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        videos = getattr(self.source, "videos", None)  # e.g. Kinetics' relative paths: name the file even if it fails
        video = str(videos[index]) if isinstance(videos, Sequence) and 0 <= index < len(videos) else str(index)
        try:
            item = self.source[index]
            video = str(item.get("video", index))
            frames = item["frames"]
            if not (isinstance(frames, Tensor) and frames.is_floating_point()
                    and tuple(frames.shape) == self.frame_shape):
                got = f"{getattr(frames, 'dtype', type(frames))} {tuple(getattr(frames, 'shape', ()))}"
                raise ValueError(f"frames {got}; expected float {self.frame_shape} (T, C, H, W) from dataset.source")
            return {"index": index, "frames": frames, "label": int(item.get("label", -1)), "video": video}
        except Exception as err:  # one bad video must not stop the run
            return {"index": index, "video": video, "error": _one_line(err)}


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".replace("\n", " ")[:500]


def _as_list(batch: list) -> list:
    return batch


# --------------------------------------------------------------------------- encoding one split


def _encode(backbone: Backbone, items: list[dict[str, Any]], device: torch.device,
            amp: torch.dtype | None) -> list[tuple[dict[str, Any], Tensor | None, Tensor | None, str | None]]:
    """Encode ``items`` together; on an error, one by one so only the bad item fails.

    Returns ``(item, latents (T', N, D) | None, codes (T', N) | None, error | None)`` per item.
    """
    frames = torch.stack([it["frames"] for it in items]).to(device)  # (B, T, C, H, W)
    amp_ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    try:
        with torch.no_grad(), amp_ctx:
            z = backbone.encode(frames)
    except Exception as err:
        if len(items) == 1:
            return [(items[0], None, None, _one_line(err))]
        return [r for it in items for r in _encode(backbone, [it], device, amp)]
    latents = z.latents.float().cpu()  # one device-to-host copy per batch
    codes = None if z.codes is None else z.codes.long().cpu()
    return [(it, latents[j], None if codes is None else codes[j], None) for j, it in enumerate(items)]


def _is_cached(path: Path, latent_shape: tuple[int, ...], discrete: bool) -> dict[str, str] | None:
    """The metadata of a complete clip file with the expected shapes, else ``None``."""
    header = read_clip_header(path)
    if header is None or header["shapes"].get("latents") != latent_shape:
        return None
    if discrete and header["shapes"].get("codes") != latent_shape[:2]:
        return None
    return header["metadata"]


def _row(split: str, index: int, label: int, video: str, latent_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"out_path": clip_path(split, index), "label": label, "num_latent_frames": latent_shape[0],
            "shape": shape_str(latent_shape), "source_video": video, "index": index}


def cache_split(backbone: Backbone, source: Dataset, root: Path, split: str, indices: range, *,
                latent_shape: tuple[int, ...], frame_shape: tuple[int, ...], discrete: bool,
                settings: CacheSettings, device: torch.device, rank: int = 0,
                show_progress: bool = False) -> SplitSummary:
    """Encode the items ``indices`` of ``source`` into ``root/<split>/`` and write this rank's partial CSVs.

    Args:
        latent_shape: expected ``(T', N, D)`` per clip; frame_shape: expected ``(T, C, H, W)`` per item.
        discrete: whether the backbone returns codes (written as ``codes`` ``(T', N)``).

    Returns:
        This rank's :class:`SplitSummary`.

    Raises:
        ValueError: the backbone returned latents of another shape than ``latent_shape``, or values that
            overflow ``cache.dtype`` (a configuration problem, not a bad video).
    """
    summary = SplitSummary(split, total=len(indices))
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    pending = []
    for index in indices:
        meta = _is_cached(root / clip_path(split, index), latent_shape, discrete)
        if meta is None:
            pending.append(index)
        else:
            rows.append(_row(split, index, int(meta.get("label", -1)), meta.get("video", str(index)), latent_shape))
    summary.skipped = len(rows)

    dtype = DTYPES[settings.dtype]
    loader = DataLoader(_Guarded(source, frame_shape), batch_size=settings.batch_size, sampler=pending,
                        num_workers=settings.num_workers, collate_fn=_as_list, pin_memory=device.type == "cuda")
    bar = _progress(split, enabled=show_progress)
    start = time.perf_counter()
    with bar:
        task = bar.add_task(split, total=summary.total, completed=summary.skipped, written=0, failed=0)
        for batch in loader:
            good = [it for it in batch if "error" not in it]
            failed.extend({"index": it["index"], "video": it["video"], "error": it["error"]}
                          for it in batch if "error" in it)
            for item, latents, codes, error in (_encode(backbone, good, device, settings.precision_dtype)
                                                if good else []):
                if error is None:
                    error = _write(root, split, item, latents, codes, latent_shape, dtype, settings.dtype)
                if error is None:
                    rows.append(_row(split, item["index"], item["label"], item["video"], latent_shape))
                    summary.written += 1
                else:
                    failed.append({"index": item["index"], "video": item["video"], "error": error})
            summary.failed = len(failed)
            bar.update(task, advance=len(batch), written=summary.written, failed=summary.failed)
    summary.seconds = time.perf_counter() - start
    write_csv(root / f"{split}.rank{rank}.csv", sorted(rows, key=lambda r: r["index"]), CSV_COLUMNS)
    write_csv(root / f"{split}_failed.rank{rank}.csv", sorted(failed, key=lambda r: r["index"]), FAILED_COLUMNS)
    return summary


def _write(root: Path, split: str, item: Mapping[str, Any], latents: Tensor, codes: Tensor | None,
           latent_shape: tuple[int, ...], dtype: torch.dtype, dtype_name: str) -> str | None:
    """Write one clip; returns an error line for a bad item (non-finite latents), raises for a bad config."""
    if tuple(latents.shape) != latent_shape:
        raise ValueError(f"the backbone encoded item {item['index']} to latents of shape {tuple(latents.shape)}; "
                         f"expected {latent_shape} (T', N, D) from its latent spec")
    if not torch.isfinite(latents).all():
        return "ValueError: the backbone returned non-finite latents"
    stored = latents.to(dtype)
    if not torch.isfinite(stored).all():
        raise ValueError(f"latents of item {item['index']} overflow cache.dtype={dtype_name} "
                         f"(max |value| {latents.abs().max().item():.4g}); use cache.dtype=float32 or bfloat16")
    tensors = {"latents": stored}
    if codes is not None:
        tensors["codes"] = codes
    write_clip(root / clip_path(split, item["index"]), tensors,
               {"index": item["index"], "label": item["label"], "video": item["video"], "split": split})
    return None


def merge_partial_csvs(root: Path, split: str, world_size: int) -> tuple[int, int]:
    """Rank 0, after the barrier: merge ``<split>.rank*.csv`` into ``<split>.csv`` (same for ``_failed``).

    Rows are sorted by index and deduplicated by index; the partial files (also stale ones of an earlier
    run with more ranks) are deleted. Returns ``(rows, failed rows)``.
    """
    counts = []
    for final, stem, columns in ((csv_path(root, split), f"{split}", CSV_COLUMNS),
                                 (failed_csv_path(root, split), f"{split}_failed", FAILED_COLUMNS)):
        merged: dict[int, dict[str, str]] = {}
        for r in range(world_size):
            for row in read_csv(root / f"{stem}.rank{r}.csv", columns):
                merged[int(row["index"])] = row
        write_csv(final, [merged[i] for i in sorted(merged)], columns)
        for partial in root.glob(f"{stem}.rank*.csv"):
            partial.unlink(missing_ok=True)
        counts.append(len(merged))
    return counts[0], counts[1]


def _progress(split: str, enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]cache[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("written {task.fields[written]}  failed {task.fields[failed]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled)


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
        split_info = _merge_info(root, info, split, len(source))  # every rank checks: all fail alike
        if dist.is_main:
            _write_info(root, split_info)
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
