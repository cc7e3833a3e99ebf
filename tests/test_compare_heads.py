"""benchmarks/compare_heads.py: which presets share the default tokenizer, and the table."""

from __future__ import annotations

import importlib.util
import json

from composing import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("compare_heads", ROOT / "benchmarks" / "compare_heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_presets_with_their_own_tokenizer_config_are_told_apart():
    script = _script()
    default = script.tokenizer_config([])
    assert script.tokenizer_config(["+experiment=mmnist_vqvae_mamba"]) == default
    assert script.tokenizer_config(["backbone.checkpoint=/some/backbone_final.pt"]) == default  # not part of it
    own = script.tokenizer_config(["+experiment=mmnist_vqvae_transformer"])  # 256 codes instead of 128
    assert own != default and own["backbone"]["params"]["codebook_size"] == 256
    coarse = script.tokenizer_config(["+experiment=mmnist_vqvae_mamba_regression"])  # 16x16 codes of dimension 64
    assert coarse not in (default, own) and coarse["backbone"]["params"]["channel_mult"] == [1, 2]


def test_the_table_adds_the_shared_tokenizer_time_only_to_presets_that_share_it(tmp_path):
    script = _script()
    metrics = {f"test/{k}": v for k, v in {"mse": 100.0, "mae": 150.0, "ssim": 0.8, "psnr": 15.0,
                                            "num_sequences": 10}.items()}
    for key in ("copy_last", "zeros"):
        metrics.update({f"test/{key}/{m}": 200.0 for m in ("mse", "mae", "ssim", "psnr")})
    for name in ("shared", "own"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({**metrics, "reconstruction/psnr": 30.0}))
        (tmp_path / name / "wall_seconds.txt").write_text("600\n")
        (tmp_path / name / "config.yaml").write_text("head:\n  name: transformer\n  params:\n    objective: regression\n")
    rows = script.table(["shared", "own"], tmp_path, tokenizer_seconds=120.0, own={"own"}).splitlines()
    assert rows[2].split("|")[9].strip() == "12.0" and "(own)" not in rows[2]
    assert rows[3].split("|")[9].strip() == "10.0" and "30.00 dB (own)" in rows[3]
    assert "-50.0 %" in rows[2]
