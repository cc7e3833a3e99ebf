"""Encoding one split of the source into clip files: which items a rank handles, the encoding loop that
survives bad videos, and the merge of the ranks' CSVs. The command itself is :mod:`futurelat.cache`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from futurelat.datasets.latent_cache import (CSV_COLUMNS, FAILED_COLUMNS, clip_path, csv_path, failed_csv_path,
                                             read_clip_header, read_csv, shape_str, write_clip, write_csv)
from futurelat.models.base import Backbone
from futurelat.utils.precision import autocast
from futurelat.utils.progress import progress_bar

if TYPE_CHECKING:  # annotations only: the command imports this module
    from futurelat.cache import CacheSettings

#: ``cache.dtype`` → the storage dtype of ``latents``.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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


def encode_items(backbone: Backbone, items: list[dict[str, Any]], device: torch.device, precision: str
                 ) -> list[tuple[dict[str, Any], Tensor | None, Tensor | None, str | None]]:
    """Encode ``items`` together (autocast of ``precision``, e.g. ``"bf16"``); on an error, one by one so
    only the bad item fails.

    Returns ``(item, latents (T', N, D) | None, codes (T', N) | None, error | None)`` per item.
    """
    frames = torch.stack([it["frames"] for it in items]).to(device)  # (B, T, C, H, W)
    try:
        with torch.no_grad(), autocast(device, precision):
            z = backbone.encode(frames)
    except Exception as err:
        if len(items) == 1:
            return [(items[0], None, None, _one_line(err))]
        return [r for it in items for r in encode_items(backbone, [it], device, precision)]
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
    bar = progress_bar("cache", show_progress, "written {task.fields[written]}  failed {task.fields[failed]}")
    start = time.perf_counter()
    with bar:
        task = bar.add_task(split, total=summary.total, completed=summary.skipped, written=0, failed=0)
        for batch in loader:
            good = [it for it in batch if "error" not in it]
            failed.extend({"index": it["index"], "video": it["video"], "error": it["error"]}
                          for it in batch if "error" in it)
            for item, latents, codes, error in (encode_items(backbone, good, device, settings.precision)
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
