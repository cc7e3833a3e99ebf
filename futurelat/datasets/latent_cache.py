"""Latent cache: the on-disk format written by ``python -m futurelat.cache``, and the dataset that reads it.

Shape notation: ``T'`` latent frames, ``N`` tokens per latent frame, ``D`` latent channels.

Layout of a cache directory ``dir`` (``dataset.dir``)::

    dir/cache_info.json                 backbone, latent spec, source config, frames per clip
    dir/<split>.csv                     one row per cached clip (read by :class:`LatentCacheDataset`)
    dir/<split>_failed.csv              items the last run could not decode/encode: index, video, error
    dir/<split>/<index // 1000:06d>/<index:09d>.safetensors

Each clip file holds ``latents`` ``(T', N, D)`` (float16/bfloat16/float32, ``cache.dtype``) and, for a
discrete backbone, ``codes`` ``(T', N)`` int64; its safetensors metadata repeats ``index``, ``label``,
``video`` and ``split`` so a resumed run can rebuild the CSV without decoding the video again. File
names derive from the source dataset index alone, so whether an item is cached is known before
decoding it.

CSV columns (:data:`CSV_COLUMNS`): ``out_path`` (clip file relative to ``dir``), ``label`` (int, -1 when
the source has no labels), ``num_latent_frames`` (``T'``), ``shape`` (``"T'xNxD"``, e.g.
``"8x256x1024"``), ``source_video`` (the source item's ``"video"``, else its index) and ``index`` (source
dataset index). Rows are sorted by ``index``.

Cached clips are only ever read with ``safetensors.torch.load_file``: nothing is unpickled, and a
``.pt``/``.pth``/pickle file named in a CSV is refused.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor
from torch.utils.data import Dataset

from futurelat.models.base import LatentSpec

__all__ = [
    "CSV_COLUMNS",
    "FAILED_COLUMNS",
    "LatentCacheDataset",
    "build_latent_cache",
    "check_cache_info",
    "check_cache_for_model",
    "clip_path",
    "is_latent_cache",
    "load_cache_info",
    "read_clip_header",
    "write_clip",
]

FORMAT_VERSION = 1
INFO_NAME = "cache_info.json"
CLIP_SUFFIX = ".safetensors"
CSV_COLUMNS = ("out_path", "label", "num_latent_frames", "shape", "source_video", "index")
FAILED_COLUMNS = ("index", "video", "error")
#: Files per sub-directory of ``dir/<split>/``.
SHARD_SIZE = 1000


# --------------------------------------------------------------------------- paths and names


def clip_path(split: str, index: int) -> str:
    """The clip file of source item ``index``, relative to the cache dir: ``"train/000012/000012345.safetensors"``."""
    return f"{split}/{index // SHARD_SIZE:06d}/{index:09d}{CLIP_SUFFIX}"


def csv_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}.csv"


def failed_csv_path(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"{split}_failed.csv"


def shape_str(shape: Sequence[int]) -> str:
    """``(8, 256, 1024)`` → ``"8x256x1024"``."""
    return "x".join(str(int(s)) for s in shape)


def is_latent_cache(cfg: Mapping[str, Any] | DictConfig) -> bool:
    """Whether a dataset config describes a latent cache (it has ``source`` and ``dir`` keys)."""
    return "source" in cfg and "dir" in cfg


def cache_command(cfg: Mapping[str, Any] | DictConfig, split: str | None = None) -> str:
    """The ``python -m futurelat.cache ...`` command that writes ``split`` (``None``: every split) of the
    cache ``cfg`` describes.

    Under Hydra (``python -m futurelat.main ...``) it repeats that run's overrides, so the cache is
    written with the same experiment, backbone and checkpoint; otherwise it spells out the dataset keys.
    """
    from hydra.core.hydra_config import HydraConfig

    splits = [] if split is None else [f"cache.splits=[{split}]"]
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("cache.splits=")]
        return shlex.join(["python", "-m", "futurelat.cache", *overrides, *splits])
    args = [f"dataset={cfg.get('name')}", f"dataset@dataset.source={cfg['source'].get('name')}",
            f"dataset.dir={cfg['dir']}", *splits]
    if cfg.get("expect_backbone"):
        args.insert(0, f"backbone={cfg['expect_backbone']}")
    return shlex.join(["python", "-m", "futurelat.cache", *args]) + " [+experiment=... backbone.checkpoint=...]"


# --------------------------------------------------------------------------- clip files


def write_clip(path: str | os.PathLike, tensors: Mapping[str, Tensor], metadata: Mapping[str, Any]) -> Path:
    """Write one clip's tensors as safetensors, atomically.

    The bytes go to a hidden temporary file in the same directory which is then ``os.replace``-d onto
    ``path``: a killed run leaves either no file or a complete one (never half a file that a resumed
    run would take for done). Parent directories are created.

    Args:
        tensors: ``{"latents": (T', N, D) float, "codes": (T', N) int64}`` (``codes`` optional).
        metadata: string-able values stored in the safetensors header (``index``, ``label``, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                             metadata={k: str(v) for k, v in metadata.items()})
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_clip_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The header of a complete safetensors clip file, without reading its tensors.

    Returns:
        ``{"shapes": {name: tuple}, "dtypes": {name: str}, "metadata": {str: str}}``, or ``None`` when
        the file is missing, truncated (shorter than its header says) or not a safetensors file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                return None
            header = json.loads(f.read(header_len))
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    metadata = header.pop("__metadata__", None) or {}
    try:
        end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
        shapes = {k: tuple(int(s) for s in v["shape"]) for k, v in header.items()}
        dtypes = {k: str(v["dtype"]) for k, v in header.items()}
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if 8 + header_len + end != size:
        return None
    return {"shapes": shapes, "dtypes": dtypes, "metadata": metadata}


# --------------------------------------------------------------------------- CSV files


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts with ``columns``) as a CSV with a header, atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows({c: row[c] for c in columns} for row in rows)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_csv(path: str | os.PathLike, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`write_csv`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the header lacks one of ``columns`` (the message names the file and the columns).
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected columns {list(columns)}, "
                             f"found {reader.fieldnames}")
        return list(reader)


# --------------------------------------------------------------------------- cache_info.json


def load_cache_info(root: str | os.PathLike, command: str = "python -m futurelat.cache ...") -> dict[str, Any]:
    """``dir/cache_info.json`` as a dict.

    Raises:
        FileNotFoundError: no such file (the message says to run ``command``).
        ValueError: unreadable JSON, or a format version this code does not read.
    """
    path = Path(root) / INFO_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a latent cache (yet). Write it first:\n  {command}")
    try:
        info = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION:
        found = info.get("format") if isinstance(info, dict) else info
        raise ValueError(f"{path}: unsupported latent cache format {found!r} (this code reads format "
                         f"{FORMAT_VERSION}); re-run `python -m futurelat.cache` into a new dir")
    return info


def spec_to_dict(spec: LatentSpec) -> dict[str, Any]:
    """The spec as stored in ``cache_info.json`` (``first_frame_alone`` only when true: older caches match)."""
    out = {"latent_dim": spec.latent_dim, "grid": list(spec.grid), "codebook_size": spec.codebook_size,
           "temporal_downsample": spec.temporal_downsample}
    return {**out, "first_frame_alone": True} if spec.first_frame_alone else out


def check_cache_info(info: Mapping[str, Any], where: str, *, backbone_name: str | None = None,
                     spec: LatentSpec | None = None, frames_per_clip: int | None = None) -> None:
    """Check that a cache's ``cache_info.json`` matches the configured backbone and clip length.

    Args:
        where: names the cache in messages (e.g. its directory).
        backbone_name: ``backbone.name`` of the run (``None``: not checked).
        spec: the configured backbone's :class:`LatentSpec` for the dataset's frame size (``None``: not checked).
        frames_per_clip: ``dataset.context_frames + dataset.future_frames`` (``None``: not checked).

    Raises:
        ValueError: a mismatch; the message names the cache, the cached value and the configured one.
    """
    problems = []
    cached_name = info.get("backbone", {}).get("name")
    if backbone_name is not None and cached_name != backbone_name:
        problems.append(f"backbone: cached '{cached_name}', configured '{backbone_name}'")
    if spec is not None and info.get("spec") != spec_to_dict(spec):
        problems.append(f"latent spec: cached {info.get('spec')}, configured {spec_to_dict(spec)}")
    if frames_per_clip is not None and info.get("frames_per_clip") != int(frames_per_clip):
        problems.append(f"frames per clip: cached {info.get('frames_per_clip')}, configured {frames_per_clip} "
                        "(dataset.context_frames + dataset.future_frames)")
    if problems:
        raise ValueError(f"latent cache {where} does not match this run: {'; '.join(problems)}. "
                         "Cache again with this config into another dataset.dir")


def check_cache_for_model(dataset_cfg: Mapping[str, Any] | DictConfig, backbone_name: str, spec: LatentSpec) -> None:
    """:func:`check_cache_info` of the cache ``dataset_cfg.dir`` against a built model's backbone and spec.

    For ``futurelat.main`` after ``build_model``: the reader alone cannot build the backbone to know its spec.
    """
    info = load_cache_info(dataset_cfg["dir"], cache_command(dataset_cfg))
    check_cache_info(info, str(dataset_cfg["dir"]), backbone_name=backbone_name, spec=spec,
                     frames_per_clip=int(dataset_cfg["context_frames"]) + int(dataset_cfg["future_frames"]))


# --------------------------------------------------------------------------- dataset


class LatentCacheDataset(Dataset):
    """Map-style dataset over ``dir/<split>.csv``: the clips of a latent cache.

    Args:
        root: the cache directory (``dataset.dir``).
        split: ``"train"`` or ``"test"`` (any split the cache command wrote).
        max_items: read only the first ``max_items`` rows (``None``: all).
        command: the command to suggest when the split is missing (default: a generic one).

    Items: ``{"latents": (T', N, D) float32, "codes": (T', N) int64 (discrete backbones only),
    "label": int (-1 without labels), "index": int (source dataset index)}``.

    Raises:
        FileNotFoundError: no ``cache_info.json`` or no ``<split>.csv`` (the message gives the command to run).
        ValueError: a CSV row names a non-safetensors file (pickles are never loaded) or has a ``shape``
            other than the cache's ``(T', N, D)``; in ``__getitem__``, a clip file whose tensors have the
            wrong shape (the message names the file, the expected and the actual shape).
    """

    def __init__(self, root: str | os.PathLike, split: str, *, max_items: int | None = None,
                 command: str | None = None):
        self.root = Path(root)
        self.split = split
        command = command or f"python -m futurelat.cache ... dataset.dir={self.root} cache.splits=[{split}]"
        path = csv_path(self.root, split)
        if not path.is_file():
            raise FileNotFoundError(f"latent cache split '{split}' not found: {path} does not exist. "
                                    f"Run the cache first:\n  {command}")
        self.info = load_cache_info(self.root, command)
        self.latent_shape = tuple(int(s) for s in self.info["latent_shape"])
        self.has_codes = self.info["spec"].get("codebook_size") is not None
        rows = read_csv(path, CSV_COLUMNS)
        if max_items is not None:
            if int(max_items) < 1:
                raise ValueError(f"dataset.max_items must be None or >= 1; got {max_items}")
            rows = rows[: int(max_items)]
        for row in rows:
            self._check_row(row, path)
        self.rows = rows

    def _check_row(self, row: Mapping[str, str], csv_file: Path) -> None:
        out_path = row["out_path"]
        if not out_path.endswith(CLIP_SUFFIX):
            raise ValueError(f"{csv_file}: row index={row['index']} names {self.root / out_path}, which is not a "
                             f"{CLIP_SUFFIX} file; refusing it: pickles (.pt/.pth/.pkl) are not loaded, cached "
                             "latents are read with safetensors only")
        if row["shape"] != shape_str(self.latent_shape):
            raise ValueError(f"{csv_file}: {self.root / out_path} has shape {row['shape']}; expected "
                             f"{shape_str(self.latent_shape)} (T', N, D) from {self.root / INFO_NAME}")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Tensor | int]:
        row = self.rows[i]
        path = self.root / row["out_path"]
        try:
            tensors = load_file(path)
        except Exception as err:  # safetensors raises its own error types for bad files
            raise ValueError(f"cannot read cached clip {path} (listed in {csv_path(self.root, self.split)}): "
                             f"{type(err).__name__}: {err}") from err
        latents = tensors.get("latents")
        if latents is None or tuple(latents.shape) != self.latent_shape:
            actual = None if latents is None else tuple(latents.shape)
            raise ValueError(f"cached clip {path}: latents have shape {actual}; "
                             f"expected {self.latent_shape} (T', N, D)")
        item: dict[str, Tensor | int] = {"latents": latents.float()}
        if self.has_codes:
            codes = tensors.get("codes")
            expected = self.latent_shape[:2]
            if codes is None or tuple(codes.shape) != expected:
                actual = None if codes is None else tuple(codes.shape)
                raise ValueError(f"cached clip {path}: codes have shape {actual}; expected {expected} (T', N)")
            item["codes"] = codes.long()
        item["label"] = int(row["label"])
        item["index"] = int(row["index"])
        return item

    def __repr__(self) -> str:
        return (f"LatentCacheDataset(root={str(self.root)!r}, split={self.split!r}, items={len(self)}, "
                f"shape={shape_str(self.latent_shape)}, backbone={self.info['backbone']['name']!r})")


def build_latent_cache(cfg: Mapping[str, Any] | DictConfig, split: str) -> LatentCacheDataset:
    """The ``split`` of the cache described by a cached dataset config (``configs/dataset/kinetics_400_cached.yaml``).

    Uses ``cfg.dir``, ``cfg.max_items``, and checks ``cache_info.json`` against ``cfg.expect_backbone``
    (``${backbone.name}``) and ``cfg.context_frames + cfg.future_frames``.

    Raises:
        ValueError: ``cfg`` is not a cached dataset config, or the cache does not match it.
        FileNotFoundError: the split was never cached (the message gives the command).
    """
    if not is_latent_cache(cfg):
        raise ValueError(f"dataset '{cfg.get('name')}' is not a latent cache config: it needs keys `source` "
                         "(the raw dataset config) and `dir` (the cache directory)")
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    dataset = LatentCacheDataset(cfg["dir"], split, max_items=cfg.get("max_items"), command=cache_command(cfg, split))
    frames = cfg.get("context_frames"), cfg.get("future_frames")
    check_cache_info(dataset.info, str(cfg["dir"]), backbone_name=cfg.get("expect_backbone"),
                     frames_per_clip=None if None in frames else int(frames[0]) + int(frames[1]))
    return dataset
