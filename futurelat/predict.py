"""``python -m futurelat.predict``: a finished run predicts the future of any video (or folder of frames).

    python -m futurelat.predict --run outputs/2026-01-01/12-00-00 --video film.mp4 --start 12.5
    python -m futurelat.predict --run RUN --video frames/ --fps 30 --future-frames 20 --num-samples 3

Reads the run's ``config.yaml`` and final checkpoints, preprocesses the video as the run's dataset
preprocesses its clips (:mod:`futurelat.datasets.video_input`: size, channels, gray, frame stride or
target fps), encodes the context from the start time, rolls out the future (``K`` samples), decodes it,
and writes to ``--out`` (default ``<run>/predict/<video stem>_<start>/``):

- ``prediction.gif`` / ``prediction.mp4``: ``context | prediction | truth`` panels per time step
  (:mod:`futurelat.evaluation.panels`; truth only where the video continues after the context);
- ``latents.safetensors``: ``context_latents`` ``(Tc', N, D)``, ``predicted_latents`` ``(K, Tf', N, D)``,
  and for a discrete backbone ``context_codes`` ``(Tc', N)`` and ``predicted_codes`` ``(K, Tf', N)``
  (a code prior's latents are its codes' codebook vectors, a latent head's codes its latents snapped to
  the codebook, as decoded);
- ``prediction.json``: the run, the video, the frames used, the rates, and when truth exists the MSE,
  MAE, SSIM and PSNR (:mod:`futurelat.evaluation.metrics`) of the prediction (mean over samples) and
  of copy-last-frame over the true frames.

An argparse command, not a Hydra app like ``futurelat.main``: nothing here is composed, the model's
config is the run's ``config.yaml`` as saved, and the inputs are two paths and a few numbers that read
best as ``--run DIR --video PATH``; Hydra would add its own output folder and logging to a command that
only reads a run. :func:`main` raises; run as a module, the expected errors print one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file
from torch import Tensor

from futurelat.datasets.clips import max_start
from futurelat.datasets.video_input import InputClip, InputPreprocessing, SourceVideo, open_source, read_clip
from futurelat.datasets.video_io import VideoDecodeError
from futurelat.evaluation.metrics import METRIC_NAMES, frame_metrics
from futurelat.evaluation.panels import draw_panels, save_gif, save_mp4
from futurelat.models.base import Latents
from futurelat.models.latent_video_model import LatentVideoModel, build_model
from futurelat.registry import BACKBONES
from futurelat.training.config_match import load_checked_weights
from futurelat.training.distributed import resolve_device

__all__ = ["PredictionError", "build_parser", "load_run", "main", "rollout"]

FORMATS = ("gif", "mp4", "both")


class PredictionError(ValueError):
    """A run or an input that predict cannot use; the message says which and what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m futurelat.predict", description="\n".join(__doc__.split("\n")[:5]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished run directory of python -m futurelat.main")
    p.add_argument("--video", required=True, help="a video file, or a folder of frames (png/jpg, sorted by name)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--start", type=float, default=0.0, help="start of the context, in seconds (default 0)")
    start.add_argument("--start-frame", type=int, default=None, help="start of the context, as a source frame index")
    p.add_argument("--context-frames", type=int, default=None, help="default: the run's dataset.context_frames")
    p.add_argument("--future-frames", type=int, default=None, help="default: the run's dataset.future_frames")
    p.add_argument("--num-samples", type=int, default=1, help="futures from one context (default 1)")
    p.add_argument("--seed", type=int, default=None, help="default: the run's seed")
    p.add_argument("--fps", type=float, default=None, help="frame rate of a folder of frames (ignored for a video)")
    p.add_argument("--out", default=None, help="output folder; default <run>/predict/<video stem>_<start>/")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto: cuda if available")
    p.add_argument("--format", default="gif", choices=FORMATS, help="prediction.gif (default), .mp4 or both")
    return p


# ------------------------------------------------------------------------- the run


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[DictConfig, LatentVideoModel]:
    """The run's config and its model with the final weights, frozen, in eval mode on ``device``.

    Checkpoints as the quickstart notebook loads them: ``checkpoints/<part>_final.pt``, else the
    ``<part>.checkpoint`` the config names (a stage the run did not train), checked against the config.

    Raises:
        FileNotFoundError: no run directory, no ``config.yaml``, or a stage that did not finish (named).
        PredictionError: a backbone without a pixel decoder (V-JEPA 2).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: it is not a run directory of python -m futurelat.main")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    name = cfg.backbone.name
    if not getattr(BACKBONES.get(name), "has_decoder", True):
        raise PredictionError(
            f"backbone '{name}' of {run_dir} has no pixel decoder: predict draws decoded frames and needs one "
            "(e.g. vqvae). This run is scored in latent space: its evaluate stage writes metrics.json and "
            "latent_predictions.png (python -m futurelat.main stages=[evaluate] ...; docs/vjepa2_kinetics.md)")
    model = build_model(cfg)
    for part in ("backbone", "head"):
        final = run_dir / "checkpoints" / f"{part}_final.pt"
        if final.is_file():  # trained in this run
            cfg[part].checkpoint = str(final)
        elif cfg[part].checkpoint:  # trained elsewhere and named on the run's command line
            if not Path(cfg[part].checkpoint).is_file():
                raise FileNotFoundError(f"{run_dir}/config.yaml names {part}.checkpoint={cfg[part].checkpoint}, "
                                        "which is not there (a relative path is read from the current folder)")
        elif part == "head" or model.backbone.trainable:
            last = final.with_name(f"{part}_last.pt")
            hint = (f"; {last.name} is there: run the run's command again with hydra.run.dir={run_dir} to finish it"
                    if last.is_file() else "")
            raise FileNotFoundError(f"{run_dir}: the {part} stage did not finish: no checkpoints/{final.name} and "
                                    f"config.yaml names no {part}.checkpoint{hint}")
        if cfg[part].checkpoint:
            load_checked_weights(cfg, part, getattr(model, part))
    if not model.backbone.has_decoder:
        raise PredictionError(f"backbone '{name}' has no pixel decoder: predict needs one")
    model.backbone.freeze()
    return cfg, model.eval().to(device)


# ------------------------------------------------------------------------- the prediction


@torch.no_grad()
def rollout(model: LatentVideoModel, context: Tensor, num_future: int, num_samples: int = 1
            ) -> tuple[Latents, Latents, Tensor]:
    """Encode ``context`` ``(Tc, C, H, W)`` once, roll out ``num_samples`` futures of ``num_future`` frames.

    Returns:
        context :class:`Latents` ``(1, Tc', N, D)``; predicted :class:`Latents` ``(K, Tf', N, D)`` (a code
        prior's latents: its codes' codebook vectors; a latent head's codes on a discrete backbone: its
        latents snapped to the codebook, as decoded); predicted frames ``(K, Tf, C, H, W)`` in [0, 1].

    Raises:
        ValueError: frame counts the backbone cannot encode (multiples of its temporal downsampling;
            ``1 + k * s`` context frames for a backbone that encodes the first frame alone).
    """
    step = model.spec.temporal_downsample
    model.spec.latent_frames(len(context), "the context", "the run's backbone")  # ValueError: not encodable
    if num_future < 1 or num_future % step:
        raise ValueError(f"future frames must be a positive multiple of the backbone's temporal "
                         f"downsampling ({step}); got {num_future}")
    z = model.encode(context[None])  # (1, Tc', N, D)
    repeat = (num_samples,) + (1,) * (z.latents.ndim - 1)
    batch = Latents(z.latents.repeat(repeat), None if z.codes is None else z.codes.repeat(repeat[:-1]))
    future = model.head.rollout(batch, num_future // step)
    frames = model.decode_future(batch, future)
    if future.latents.shape[-1] == 0 and future.codes is not None:  # a code prior predicts codes only
        future = Latents(model.backbone.embed_codes(future.codes), future.codes)
    elif future.codes is None and model.spec.discrete and hasattr(model.backbone, "snap"):
        future = Latents(future.latents, model.backbone.snap(future.latents))  # the codes the decoder used
    return z, future, frames


def _scores(prediction: Tensor, truth: Tensor) -> dict[str, float]:
    """Mean of each metric over frames and samples: ``(K, T, C, H, W)`` against ``(1|K, T, C, H, W)``."""
    per_frame = frame_metrics(prediction, truth.expand_as(prediction))
    return {name: round(float(per_frame[name].mean()), 6) for name in METRIC_NAMES}


def _start_frame(args: argparse.Namespace, source: SourceVideo) -> tuple[int, str]:
    """(source frame, label for the output folder) of ``--start`` / ``--start-frame``."""
    if args.start_frame is not None:
        if args.start_frame < 0:
            raise PredictionError(f"--start-frame must be >= 0; got {args.start_frame}")
        return args.start_frame, f"f{args.start_frame}"
    if args.start < 0:
        raise PredictionError(f"--start must be >= 0 seconds; got {args.start:g}")
    if args.start and not source.fps:
        raise PredictionError(f"{source.path} is a folder of frames without a frame rate: give --fps, or "
                              "--start-frame instead of --start")
    return int(round(args.start * source.fps)) if args.start else 0, f"{args.start:g}s"


def _too_short(clip: InputClip, pre: InputPreprocessing, start: int, needed: int) -> PredictionError:
    src, step = clip.source, clip.step
    at = f" ({start / src.fps:.2f} s)" if src.fps else ""
    last = max_start(src.num_frames, needed, step)
    where = (f"the last start that fits is frame {last}" + (f" ({last / src.fps:.2f} s)" if src.fps else "")
             if last >= 0 else f"it is too short for {needed} clip frames at this {pre.timing()}")
    return PredictionError(f"{src.describe()}: from frame {start}{at} at {pre.timing()} (step {step:g}) it gives "
                           f"{len(clip.source_indices)} clip frame(s), fewer than the {needed} context frames; "
                           f"{where}, or lower --context-frames")


def main(argv: list[str] | None = None) -> Path:
    """Run predict with command-line ``argv``; returns the output folder (see the module docstring).

    Raises:
        FileNotFoundError: a missing run, config, checkpoint, video or frame folder (named).
        PredictionError: no pixel decoder, a video too short for the context, bad arguments.
        VideoDecodeError: a video that cannot be decoded.
    """
    args = build_parser().parse_args(argv)
    began = time.perf_counter()
    if args.num_samples < 1:
        raise PredictionError(f"--num-samples must be >= 1; got {args.num_samples}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PredictionError("--device cuda, but torch.cuda.is_available() is False")
    device = resolve_device(args.device)
    run_dir = Path(args.run)
    cfg, model = load_run(run_dir, device)
    pre = InputPreprocessing.from_dataset(cfg.dataset)
    tc = int(args.context_frames or cfg.dataset.context_frames)
    tf = int(args.future_frames or cfg.dataset.future_frames)

    source = open_source(args.video, args.fps)
    start, label = _start_frame(args, source)
    clip = read_clip(source, pre, start, tc + tf)
    if len(clip.frames) < tc:
        raise _too_short(clip, pre, start, tc)
    context, truth = clip.frames[:tc], clip.frames[tc:]
    seed = int(cfg.seed if args.seed is None else args.seed)
    torch.manual_seed(seed)
    z_context, z_future, predicted = rollout(model, context.to(device), tf, args.num_samples)
    predicted = predicted.float().cpu()  # (K, Tf, C, H, W)

    out = Path(args.out) if args.out else run_dir / "predict" / f"{Path(source.path).stem}_{label}"
    out.mkdir(parents=True, exist_ok=True)
    pictures = draw_panels(context, predicted, truth if len(truth) else None)
    files = []
    if args.format in ("gif", "both"):
        files.append(save_gif(pictures, out / "prediction.gif").name)
    if args.format in ("mp4", "both"):
        files.append(save_mp4(pictures, out / "prediction.mp4").name)
    files.append(_save_latents(out / "latents.safetensors", z_context, z_future, run_dir, source, start))

    metrics = None
    if len(truth):
        n = len(truth)
        metrics = {"truth_frames": n, "prediction": _scores(predicted[:, :n], truth[None]),
                   "copy_last": _scores(context[-1:].expand(n, -1, -1, -1)[None], truth[None])}
    report = _report(cfg, args, run_dir, clip, pre, start, tc, tf, seed, device, files + ["prediction.json"], metrics)
    (out / "prediction.json").write_text(json.dumps(report, indent=2) + "\n")
    _print_summary(out, report, time.perf_counter() - began)
    return out


def _save_latents(path: Path, z_context: Latents, z_future: Latents, run_dir: Path, source: SourceVideo,
                  start: int) -> str:
    tensors = {"context_latents": z_context.latents[0], "predicted_latents": z_future.latents}
    if z_context.codes is not None:
        tensors["context_codes"] = z_context.codes[0]
    if z_future.codes is not None:
        tensors["predicted_codes"] = z_future.codes
    tensors = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.cpu().contiguous()
               for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"run": str(run_dir.resolve()), "video": str(Path(source.path).resolve()),
                                            "start_frame": str(start),
                                            "shapes": "latents (T', N, D) / (K, T', N, D); codes (T', N) / (K, T', N)"})
    return path.name


def _report(cfg: DictConfig, args: argparse.Namespace, run_dir: Path, clip: InputClip, pre: InputPreprocessing,
            start: int, tc: int, tf: int, seed: int, device: torch.device, files: list[str],
            metrics: dict[str, Any] | None) -> dict[str, Any]:
    src = clip.source
    return {
        "run": str(run_dir.resolve()), "backbone": cfg.backbone.name, "head": cfg.head.name,
        "video": str(Path(src.path).resolve()), "source_frames": src.num_frames, "source_fps": src.fps,
        "start_frame": start, "start_seconds": round(start / src.fps, 4) if src.fps else None,
        "frame_stride": pre.frame_stride, "target_fps": pre.target_fps, "step": clip.step, "fps": clip.fps,
        "image_size": pre.image_size, "channels": pre.channels, "grayscale": pre.grayscale, "resize": pre.resize,
        "context_frames": tc, "future_frames": tf, "truth_frames": max(0, len(clip.source_indices) - tc),
        "frames_used": {"context": clip.source_indices[:tc], "truth": clip.source_indices[tc:]},
        "num_samples": args.num_samples, "seed": seed, "device": str(device), "files": files,
        "metrics": metrics,
    }


def _print_summary(out: Path, report: dict[str, Any], seconds: float) -> None:
    used = report["frames_used"]
    print(f"{report['video']}: context frames {used['context'][0]}..{used['context'][-1]}, "
          f"{report['future_frames']} predicted, {report['truth_frames']} true future frames ({seconds:.1f} s)")
    if report["metrics"]:
        for name in ("prediction", "copy_last"):
            scores = report["metrics"][name]
            print(f"  {name:<11}" + "  ".join(f"{k.upper()} {v:.4g}" for k, v in scores.items()))
    print(f"outputs: {out} ({', '.join(report['files'])})")


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, VideoDecodeError) as err:  # PredictionError is a ValueError
        print(f"python -m futurelat.predict: error: {err}", file=sys.stderr)
        sys.exit(1)
