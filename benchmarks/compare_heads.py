"""Train and evaluate several presets, then print one markdown table of all heads side by side.

Each preset runs as ``python -m futurelat.main +experiment=NAME`` in ``OUT/NAME`` (a subprocess,
so every run is exactly what a user gets). Presets that keep the default Moving MNIST VQ-VAE
tokenizer (the same ``backbone`` and ``trainer.backbone`` config) share it: it is trained once
(``OUT/tokenizer``) and each of them trains its head on it (``backbone.checkpoint=...``); the
table's "time" column adds that shared tokenizer time to each preset's own, i.e. what a full
``python -m futurelat.main +experiment=NAME`` takes. A preset with its own tokenizer config (one
that sets ``backbone.params`` or ``trainer.backbone``) trains it inside its run, and its time is
its run's.

    python benchmarks/compare_heads.py                         # the five Moving MNIST presets (hours on CPU)
    python benchmarks/compare_heads.py --presets mmnist_vqvae_flow --out runs/cmp -- eval.max_sequences=200
    python benchmarks/compare_heads.py --table-only --out runs/cmp   # re-print the table of finished runs
    python benchmarks/compare_heads.py --tokenizer-run outputs/<a default run>   # reuse its tokenizer

Finished presets (those with a ``metrics.json``) are not run again, so an interrupted comparison
continues where it stopped.

Columns: the model's MSE / MAE / SSIM / PSNR on the test set (OpenSTL conventions, see
futurelat/evaluation/metrics.py) next to the copy-last-frame and black-frame baselines of the same
run, the relative change of MSE against copy-last (negative = better), head parameters (without
the standardization buffers), and wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRESETS = ["mmnist_vqvae_mamba", "mmnist_vqvae_mamba_regression", "mmnist_vqvae_transformer",
           "mmnist_vqvae_transformer_ar", "mmnist_vqvae_flow"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=PRESETS, help="experiment names (configs/experiment/)")
    p.add_argument("--out", type=Path, default=Path("runs/compare_heads"), help="folder for the runs")
    p.add_argument("--own-tokenizer", action="store_true",
                   help="train the tokenizer inside every preset's run instead of sharing one")
    p.add_argument("--tokenizer-run", type=Path, default=None,
                   help="a finished run of the default config (python -m futurelat.main) whose tokenizer "
                        "to share; its tokenizer training time (from train_log.jsonl) is added to each preset")
    p.add_argument("--tokenizer-seconds", type=float, default=None,
                   help="the shared tokenizer's training time, when the run's log does not say")
    p.add_argument("--table-only", action="store_true", help="do not run anything; tabulate finished runs")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    return p.parse_args()


def tokenizer_config(overrides: list[str]) -> dict:
    """The resolved ``backbone`` (less its checkpoint) and ``trainer.backbone`` of a composed config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    config_dir = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(config_name="main", overrides=overrides)
    backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
    backbone.pop("checkpoint", None)
    return {"backbone": backbone, "tokenizer": OmegaConf.to_container(cfg.trainer.backbone, resolve=True)}


def run_main(overrides: list[str], run_dir: Path) -> float:
    """``python -m futurelat.main OVERRIDES`` in ``run_dir`` → wall seconds; log in ``run_dir.log``."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "futurelat.main", *overrides, f"hydra.run.dir={run_dir}",
           "logger=none", "trainer.progress=false"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    with open(run_dir.with_suffix(".log"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"run failed with exit code {code}; see {run_dir.with_suffix('.log')}")
    (run_dir / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    return seconds


def head_parameters(run_dir: Path) -> int | None:
    """Parameters of the head in ``run_dir/checkpoints/head_final.pt`` (None if missing)."""
    import torch

    path = run_dir / "checkpoints" / "head_final.pt"
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return sum(v.numel() for k, v in state.items() if v.is_floating_point() and "standardizer" not in k)


def head_label(config_path: Path) -> str:
    """``"mamba (regression)"``-style label of the head in a run's saved ``config.yaml``."""
    from omegaconf import OmegaConf

    head = OmegaConf.load(config_path).head
    objective = head.params.get("objective")
    return f"{head.name} ({objective})" if objective else str(head.name)


def tokenizer_seconds(run_dir: Path) -> float:
    """Seconds stage 1 took in a finished run: ``backbone/elapsed_s`` of its last tokenizer log line."""
    lines = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    keys = ("backbone/elapsed_s", "tokenizer/elapsed_s")  # the stage's name since / before 2026-11-30
    elapsed = [row[k] for row in lines for k in keys if k in row]
    if not elapsed:
        raise SystemExit(f"{run_dir}/train_log.jsonl has no tokenizer lines with elapsed_s")
    return float(elapsed[-1])


def read_seconds(run_dir: Path) -> float | None:
    path = run_dir / "wall_seconds.txt"
    return float(path.read_text()) if path.exists() else None


def table(presets: list[str], out: Path, tokenizer_seconds: float, own: set[str] = frozenset()) -> str:
    """The markdown table of the finished runs among ``presets``; those in ``own`` trained their own tokenizer."""
    rows = ["| preset | head | MSE ↓ | MAE ↓ | SSIM ↑ | PSNR ↑ | MSE vs copy-last | params | time (min) | tokenizer PSNR |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    baselines = None
    for name in presets:
        run_dir = out / name
        metrics_path = run_dir / "metrics.json"
        if not metrics_path.exists():
            rows.append(f"| {name} | (not run) | | | | | | | | |")
            continue
        m = json.loads(metrics_path.read_text())
        head = head_label(run_dir / "config.yaml")
        seconds = (read_seconds(run_dir) or 0.0) + (0.0 if name in own else tokenizer_seconds)
        params = head_parameters(run_dir)
        change = 100 * (m["test/mse"] / m["test/copy_last/mse"] - 1)  # negative: lower MSE than copy-last
        rows.append(f"| {name} | {head} | {m['test/mse']:.1f} | {m['test/mae']:.1f} | {m['test/ssim']:.3f} | "
                    f"{m['test/psnr']:.2f} | {change:+.1f} % | {params / 1e6 if params else float('nan'):.2f}M | "
                    f"{seconds / 60:.1f} | {m.get('reconstruction/psnr', float('nan')):.2f} dB{' (own)' if name in own else ''} |")
        baselines = baselines or m
    if baselines:
        for label, key in (("copy last frame", "copy_last"), ("black frames", "zeros")):
            rows.append(f"| *{label}* | baseline | {baselines[f'test/{key}/mse']:.1f} | {baselines[f'test/{key}/mae']:.1f} "
                        f"| {baselines[f'test/{key}/ssim']:.3f} | {baselines[f'test/{key}/psnr']:.2f} | | | | |")
        rows.append(f"\n{int(baselines['test/num_sequences'])} test sequences; tokenizer PSNR is the test-set "
                    "round trip of the tokenizer each preset decodes with ('own': trained in the preset's run).")
    return "\n".join(rows)


def main() -> None:
    args = parse_args()
    tokenizer_dir = args.tokenizer_run or args.out / "tokenizer"
    shared = not args.own_tokenizer
    default = tokenizer_config(args.overrides)
    own = {name for name in args.presets
           if not shared or tokenizer_config([f"+experiment={name}", *args.overrides]) != default}
    if not args.table_only:
        if set(args.presets) - own and not (tokenizer_dir / "checkpoints" / "backbone_final.pt").exists():
            run_main(["stages=[backbone]", *args.overrides], tokenizer_dir)
        for name in args.presets:
            if (args.out / name / "metrics.json").exists():
                print(f"{name}: finished earlier, not run again", flush=True)
                continue
            extra = []
            if name not in own:
                extra = ["stages=[head,evaluate]",
                         f"backbone.checkpoint={tokenizer_dir / 'checkpoints' / 'backbone_final.pt'}"]
            run_main([f"+experiment={name}", *extra, *args.overrides], args.out / name)
    shared_seconds = 0.0
    if shared:
        if args.tokenizer_seconds is not None:
            shared_seconds = args.tokenizer_seconds
        elif args.tokenizer_run:
            shared_seconds = tokenizer_seconds(tokenizer_dir)
        else:
            shared_seconds = read_seconds(tokenizer_dir) or 0.0
    print(table(args.presets, args.out, shared_seconds, own))


if __name__ == "__main__":
    main()
