"""Peak memory and step time of a training step with and without ``trainer.gradient_checkpointing``; prints figures, asserts nothing.

Each trunk runs at the width of its GPU preset, read from the composed config (head params, latent
grid and clip length), not restated here:

- ``transformer``: ``vjepa2_deterministic`` (regression over V-JEPA 2 ViT-L latents),
- ``flow_dit``: ``vjepa2_flow`` (rectified-flow DiT over the same latents),
- ``mamba``: ``mmnist_vqvae_mamba_large`` (token-ordered Mamba-2 prior over VQ-VAE codes).

The backbone is never run: it is built on the ``meta`` device only to give the head its
``LatentSpec`` (V-JEPA 2 as a random-weight ``VJEPA2Config()``, whose defaults are the ViT-L/16 of
the preset's ``facebook/vjepa2-vitl-fpc64-256``, so no weights are needed), and the head trains on
random latents / codes of that shape. One step is ``head(z)`` forward + backward
(``benchmarks/timing.py``, no optimizer), in float32. Each (trunk, checkpointing) pair runs in a
fresh subprocess so that its peak memory is its own: on CPU the peak resident set size
(``ru_maxrss``) above the process's size once the head and its batch are built, on CUDA
``torch.cuda.max_memory_allocated`` above the memory allocated at that point. Both include the
gradients (the parameters' size) besides the activations that checkpointing saves. The time is
the median of ``--steps`` steps after ``--warmup`` untimed ones.

``--batch-size`` (default 1; the presets train with 32 per GPU) and ``--frames`` (latent frames per
clip; default the preset's, 32 for V-JEPA 2, 20 for Moving MNIST) shrink the step for a CPU; width,
depth and tokens per frame stay the preset's. The output says what was used. At the presets'
clip length one step takes minutes on 2 CPU cores (mamba: 82 s plain, batch 1), so on a CPU:

    python benchmarks/bench_gradient_checkpointing.py --frames 4                # 9 min on 2 busy cores
    python benchmarks/bench_gradient_checkpointing.py --trunks mamba --steps 3
    python benchmarks/bench_gradient_checkpointing.py --device cuda --batch-size 32 --steps 5
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from futurelat.models.base import LatentSpec, Latents
from futurelat.models.heads.checkpointing import set_gradient_checkpointing
from futurelat.registry import HEADS

from timing import time_train_steps

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
#: trunk → (GPU preset, overrides that let its backbone be built without downloaded weights)
PRESETS = {
    "transformer": ("vjepa2_deterministic", ["backbone.params.pretrained=null", "backbone.params.config={}"]),
    "flow_dit": ("vjepa2_flow", ["backbone.params.pretrained=null", "backbone.params.config={}"]),
    "mamba": ("mmnist_vqvae_mamba_large", []),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--trunks", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    p.add_argument("--batch-size", type=int, default=1, help="clips per step (the presets use 32 per GPU, printed)")
    p.add_argument("--frames", type=int, default=None,
                   help="latent frames per clip, >= 2 (default: the preset's); half are context where the head has them")
    p.add_argument("--steps", type=int, default=1, help="timed steps; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (AdamW state, allocator)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: JSON of one run, in this process
    return p.parse_args(argv)


def preset_head(trunk: str, frames: int | None) -> dict:
    """The head a preset trains: ``{"name", "spec", "num_frames", "params", "preset", "preset_batch"}`` (JSON-able).

    The model is built on the ``meta`` device (no memory, no weights), so the head's arguments are
    exactly those :func:`~futurelat.models.latent_video_model.build_model` gives it; ``frames``
    (if given) replaces the clip length, with half of it as context.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from futurelat.models.latent_video_model import build_model

    preset, overrides = PRESETS[trunk]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="main", overrides=[f"+experiment={preset}", *overrides])
    with torch.device("meta"):
        model = build_model(cfg)
    params = OmegaConf.to_container(cfg.head.params, resolve=True)
    if "context_latents" in params:  # null in the YAML: resolved by build_model
        params["context_latents"] = model.head.context_latents
    spec, num_frames = model.spec, model.head.num_frames
    if frames is not None:
        num_frames = frames
        if "context_latents" in params:
            params["context_latents"] = frames // 2
    return {"name": cfg.head.name, "params": params, "num_frames": num_frames, "preset": preset,
            "preset_batch": int(cfg.trainer.head.batch_size),
            "spec": dict(latent_dim=spec.latent_dim, grid=list(spec.grid), codebook_size=spec.codebook_size)}


def random_clip(spec: LatentSpec, batch: int, frames: int, device: torch.device) -> Latents:
    """Random latents ``(B, T, N, D)`` and, for a discrete spec, codes ``(B, T, N)``."""
    latents = torch.randn(batch, frames, spec.tokens_per_frame, spec.latent_dim, device=device)
    codes = (torch.randint(0, spec.codebook_size, latents.shape[:3], device=device)
             if spec.codebook_size is not None else None)
    return Latents(latents=latents, codes=codes)


def run_one(args: argparse.Namespace, job: dict) -> dict:
    """Time training steps of one head, checkpointed or not, in this process; its peak memory above the built state."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = LatentSpec(latent_dim=job["spec"]["latent_dim"], grid=tuple(job["spec"]["grid"]),
                      codebook_size=job["spec"]["codebook_size"])
    head = HEADS.get(job["name"])(spec, job["num_frames"], **job["params"]).to(device)
    blocks = set_gradient_checkpointing(head, job["checkpointing"])
    z = random_clip(spec, args.batch_size, job["num_frames"], device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    step = time_train_steps(head, z, args.steps, device, lr=None, warmup=args.warmup)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"step_s": step, "peak_mib": peak / 2 ** 20, "blocks": blocks,
            "params_m": sum(p.numel() for p in head.parameters()) / 1e6}


def describe(job: dict) -> str:
    """One line: the preset, the trunk's size and the tokens per clip it sees."""
    p, (h, w) = job["params"], job["spec"]["grid"]
    patch = 1 if p.get("ordering") == "token" else p.get("patch_size", 1)  # the token ordering ignores patches
    return (f"{job['preset']}: d_model={p['d_model']} layers={p['num_layers']}, {job['num_frames']} latent frames "
            f"of {h}x{w} (D={job['spec']['latent_dim']}), patch {patch}: {job['num_frames'] * h * w // patch ** 2} "
            f"tokens per clip in the trunk; preset batch {job['preset_batch']}")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.frames is not None and args.frames < 2:
        raise SystemExit(f"--frames must be >= 2 (context and future); got {args.frames}")
    if args.one:
        print(json.dumps(run_one(args, json.loads(args.one))))
        return
    passthrough = [a for a in sys.argv[1:]]
    print(f"device={args.device} threads={args.threads or torch.get_num_threads()} batch={args.batch_size} "
          f"per step (each preset's own batch is printed below), frames={args.frames or 'preset'}, float32; median of "
          f"{args.steps} fwd+bwd steps after {args.warmup} warm-up; peak = memory above the built head and batch "
          "(gradients + activations)", flush=True)
    rows = []
    for trunk in args.trunks:
        job = preset_head(trunk, args.frames)
        print(describe(job), flush=True)
        for checkpointing in (False, True):
            one = json.dumps({**job, "checkpointing": checkpointing})
            out = subprocess.run([sys.executable, __file__, *passthrough, "--one", one], capture_output=True, text=True)
            if out.returncode:
                print(f"{trunk} checkpointing={checkpointing}: failed\n{out.stderr[-2000:]}", flush=True)
                continue
            rows.append({"trunk": trunk, "checkpointing": checkpointing,
                         **json.loads(out.stdout.strip().splitlines()[-1])})
    print(f"\n{'trunk':12s} {'params':>8s} {'grads MiB':>9s} {'checkpointing':>14s} {'step s':>8s} {'peak MiB':>9s}")
    by = {(r["trunk"], r["checkpointing"]): r for r in rows}
    for r in rows:
        mode = f"on ({r['blocks']} blocks)" if r["checkpointing"] else "off"
        print(f"{r['trunk']:12s} {r['params_m']:7.1f}M {r['params_m'] * 4e6 / 2 ** 20:9.0f} {mode:>14s} "
              f"{r['step_s']:8.2f} {r['peak_mib']:9.0f}")
    for trunk in args.trunks:
        if (trunk, False) in by and (trunk, True) in by:
            off, on = by[(trunk, False)], by[(trunk, True)]
            print(f"{trunk}: checkpointing uses {on['peak_mib'] / off['peak_mib']:.2f}x the peak memory "
                  f"({off['peak_mib'] - on['peak_mib']:.0f} MiB less) at {on['step_s'] / off['step_s']:.2f}x the step time")


if __name__ == "__main__":
    main()
