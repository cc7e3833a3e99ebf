"""The latent-cache format and its reader: round trip, refusals (missing split, pickles, wrong shapes,
another backbone), truncated and half-written files. Caches are written by hand here; the command that
writes them from a real backbone is tested in tests/test_cache.py."""

from __future__ import annotations

import json
import os

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from futurelat.datasets.latent_cache import (CSV_COLUMNS, FORMAT_VERSION, INFO_NAME, LatentCacheDataset,
                                             build_latent_cache, check_cache_for_model, clip_path,
                                             read_clip_header, shape_str, write_clip, write_csv)
from futurelat.models.base import LatentSpec

SHAPE = (2, 4, 3)  # (T', N, D)
SPEC = LatentSpec(latent_dim=3, grid=(2, 2), codebook_size=5, temporal_downsample=1)


def make_cache(root, n=3, shape=SHAPE, codes=True, backbone="vqvae", dtype=torch.float16):
    """A cache of ``n`` clips with latents ``i + arange`` and codes ``i``, labels ``10 + i``."""
    info = {"format": FORMAT_VERSION, "backbone": {"name": backbone, "params": {}, "checkpoint": None},
            "spec": {"latent_dim": shape[2], "grid": [2, 2], "codebook_size": 5 if codes else None,
                     "temporal_downsample": 1},
            "latent_shape": list(shape), "frames_per_clip": shape[0], "dtype": "float16",
            "source": {"name": "moving_mnist"}, "splits": {"train": {"source_items": n}}}
    (root / INFO_NAME).parent.mkdir(parents=True, exist_ok=True)
    (root / INFO_NAME).write_text(json.dumps(info))
    rows = []
    for i in range(n):
        tensors = {"latents": (torch.arange(torch.Size(shape).numel()).view(shape) / 8 + i).to(dtype)}
        if codes:
            tensors["codes"] = torch.full(shape[:2], i, dtype=torch.int64)
        write_clip(root / clip_path("train", i), tensors, {"index": i, "label": 10 + i, "video": f"v{i}.mp4"})
        rows.append({"out_path": clip_path("train", i), "label": 10 + i, "num_latent_frames": shape[0],
                     "shape": shape_str(shape), "source_video": f"v{i}.mp4", "index": i})
    write_csv(root / "train.csv", rows, CSV_COLUMNS)
    return rows


def dataset_cfg(root, backbone="vqvae", frames=(1, 1)):
    cfg = OmegaConf.create({"backbone": {"name": backbone}, "dataset": {
        "name": "kinetics_400_cached", "source": {"name": "moving_mnist"}, "dir": str(root), "max_items": None,
        "expect_backbone": "${backbone.name}", "context_frames": frames[0], "future_frames": frames[1]}})
    return cfg.dataset


def test_reader_returns_float32_latents_int64_codes_labels_and_indices(tmp_path):
    make_cache(tmp_path, n=3)
    ds = build_latent_cache(dataset_cfg(tmp_path), "train")
    assert len(ds) == 3
    item = ds[2]
    assert item["latents"].dtype == torch.float32 and item["latents"].shape == SHAPE
    assert torch.equal(item["latents"], (torch.arange(24).view(SHAPE) / 8 + 2).half().float())
    assert item["codes"].dtype == torch.int64 and torch.equal(item["codes"], torch.full((2, 4), 2))
    assert (item["label"], item["index"]) == (12, 2)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["latents"].shape == (3, *SHAPE) and batch["codes"].shape == (3, 2, 4)
    assert batch["label"].tolist() == [10, 11, 12]


def test_max_items_and_a_continuous_cache_without_codes(tmp_path):
    make_cache(tmp_path, n=3, codes=False)
    ds = LatentCacheDataset(tmp_path, "train", max_items=2)
    assert len(ds) == 2 and "codes" not in ds[1]


def test_missing_split_says_which_command_writes_it(tmp_path):
    make_cache(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        build_latent_cache(dataset_cfg(tmp_path), "test")
    message = str(err.value)
    assert str(tmp_path / "test.csv") in message and "python -m futurelat.cache" in message
    assert "dataset@dataset.source=moving_mnist" in message and "'cache.splits=[test]'" in message


def test_a_pickle_listed_in_the_csv_is_refused_without_loading_it(tmp_path, monkeypatch):
    rows = make_cache(tmp_path, n=2)
    torch.save({"latents": torch.zeros(SHAPE)}, tmp_path / "train" / "evil.pt")
    rows[1]["out_path"] = "train/evil.pt"
    write_csv(tmp_path / "train.csv", rows, CSV_COLUMNS)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called on a cached clip"))
    with pytest.raises(ValueError, match=r"evil\.pt.*not a \.safetensors file.*pickles .* are not loaded"):
        LatentCacheDataset(tmp_path, "train")


def test_a_clip_of_the_wrong_shape_is_refused_naming_file_and_shapes(tmp_path):
    make_cache(tmp_path, n=2)
    write_clip(tmp_path / clip_path("train", 1), {"latents": torch.zeros(2, 4, 5)}, {"index": 1})
    ds = LatentCacheDataset(tmp_path, "train")
    ds[0]
    with pytest.raises(ValueError) as err:
        ds[1]
    message = str(err.value)
    assert clip_path("train", 1) in message and "(2, 4, 5)" in message and "expected (2, 4, 3)" in message


def test_missing_codes_of_a_discrete_cache_are_refused(tmp_path):
    make_cache(tmp_path, n=1)
    write_clip(tmp_path / clip_path("train", 0), {"latents": torch.zeros(SHAPE)}, {"index": 0})
    with pytest.raises(ValueError, match=r"000000000\.safetensors: codes have shape None; expected \(2, 4\)"):
        LatentCacheDataset(tmp_path, "train")[0]


def test_a_csv_row_of_another_shape_is_refused_when_opening(tmp_path):
    rows = make_cache(tmp_path, n=2)
    rows[0]["shape"] = "2x4x7"
    write_csv(tmp_path / "train.csv", rows, CSV_COLUMNS)
    with pytest.raises(ValueError, match=r"000000000\.safetensors has shape 2x4x7; expected 2x4x3"):
        LatentCacheDataset(tmp_path, "train")


def test_a_cache_of_another_backbone_or_clip_length_is_refused(tmp_path):
    make_cache(tmp_path, backbone="vjepa2")
    with pytest.raises(ValueError, match="backbone: cached 'vjepa2', configured 'vqvae'"):
        build_latent_cache(dataset_cfg(tmp_path), "train")
    with pytest.raises(ValueError, match="frames per clip: cached 2, configured 4"):
        build_latent_cache(dataset_cfg(tmp_path, backbone="vjepa2", frames=(2, 2)), "train")


def test_check_cache_for_model_compares_the_latent_spec(tmp_path):
    make_cache(tmp_path)
    cfg = dataset_cfg(tmp_path)
    check_cache_for_model(cfg, "vqvae", SPEC)
    with pytest.raises(ValueError, match=r"latent spec: cached .*'codebook_size': 5.*configured .*'codebook_size': 7"):
        check_cache_for_model(cfg, "vqvae", LatentSpec(3, (2, 2), codebook_size=7))


def test_clip_header_rejects_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "a.safetensors"
    write_clip(path, {"latents": torch.ones(SHAPE)}, {"index": 4, "label": -1})
    header = read_clip_header(path)
    assert header["shapes"] == {"latents": SHAPE} and header["metadata"]["index"] == "4"
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    assert read_clip_header(path) is None
    path.write_bytes(b"not a safetensors file at all")
    assert read_clip_header(path) is None
    assert read_clip_header(tmp_path / "missing.safetensors") is None


def test_an_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "train" / "000000" / "000000000.safetensors"

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_clip(path, {"latents": torch.ones(SHAPE)}, {"index": 0})
    assert list(path.parent.iterdir()) == []
