"""The frame-prediction evaluator: a model's rollouts scored against two baselines, plus pictures.

:func:`evaluate_frames` streams a test set through ``model.rollout`` and scores the predicted
future frames with :mod:`futurelat.evaluation.metrics` (OpenSTL conventions). On the very same
sequences it scores two baselines, so a number is never read without its floor:

- ``copy_last``: every future frame is the last context frame;
- ``zeros``: every future frame is black. On Moving MNIST, whose frames are mostly black, this
  beats ``copy_last`` on MSE and SSIM (figures: docs/results.md), so a model that only learned to
  predict darkness is exposed.

A stochastic model (a sampled token prior, a flow head) can be scored on ``num_samples = k``
futures per context: ``test/*`` is then the mean over all ``k`` samples, and ``test/best_of_k/*``
scores, for each sequence, the sample with the lowest MSE (an oracle pick, the usual "best of k"
of stochastic video prediction, e.g. Denton & Fergus 2018). With ``point_estimate`` ``mean`` or
``median`` (:mod:`futurelat.evaluation.ensemble`), ``test/*`` scores instead the per-pixel mean or
median of the ``k`` futures, the pictures show it, and ``test/sample/*`` keeps the samples' own
scores beside it. A model whose ``deterministic`` attribute is true draws one future whatever ``k``.

With ``frame_gain`` (a gain per future step in [0, 1], :mod:`futurelat.evaluation.frame_gain`), every
rollout is scaled by it before it is scored and drawn, and ``test/raw/*`` keeps the scores of the
unscaled rollouts (or of their point estimate) beside ``test/*``; the gains are reported as
``test/frame_gain/step_XX``.

If the model can reconstruct frames (``model.reconstruct``, e.g. a tokenizer's encode → decode),
the reconstruction of all ``Tc + Tf`` frames is scored as ``reconstruction/*``: the ceiling a
latent-space predictor can reach. A discrete backbone (``model.spec.codebook_size``) also reports
the share of its codebook those clips use and the perplexity of their codes.

With a :class:`~futurelat.evaluation.fvd.FrechetVideoDistance` (``eval.fvd_weights``), whole clips
(context + predicted future, against context + true future) are also scored by FVD (Unterthiner et
al. 2018), for the model and for copy-last.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from futurelat.evaluation.checks import check_eval_arguments, check_frame_batch, collate_frames
from futurelat.evaluation.ensemble import futures_to_draw, point_estimate as reduce_samples
from futurelat.evaluation.frame_gain import apply_frame_gain, check_frame_gain
from futurelat.evaluation.fvd import MIN_FRAMES, FrechetVideoDistance, frechet_distance_of_features
from futurelat.evaluation.metrics import METRIC_NAMES, MetricAccumulator, frame_laplacian_energy, frame_metrics
from futurelat.evaluation.results import best_of_k, collect_metrics, write_metrics
from futurelat.evaluation.visualize import save_prediction_gif, save_prediction_grid
from futurelat.models.base import check_frames
from futurelat.utils.modes import eval_mode_on
from futurelat.utils.progress import progress_bar

log = logging.getLogger(__name__)

BASELINES: tuple[str, ...] = ("copy_last", "zeros")


class FramePredictor(Protocol):
    """What :func:`evaluate_frames` needs: ``rollout`` (and optionally ``reconstruct``)."""

    def rollout(self, context: Tensor, num_future: int) -> Tensor:
        """``(B, Tc, C, H, W)`` in [0, 1] → ``(B, num_future, C, H, W)`` in [0, 1]."""


def copy_last_baseline(context: Tensor, num_future: int) -> Tensor:
    """Repeat the last context frame: ``(B, Tc, C, H, W)`` → ``(B, num_future, C, H, W)``."""
    return context[:, -1:].expand(-1, num_future, -1, -1, -1)


def zeros_baseline(context: Tensor, num_future: int) -> Tensor:
    """Black frames: ``(B, Tc, C, H, W)`` → zeros ``(B, num_future, C, H, W)``."""
    b, _, c, h, w = context.shape
    return context.new_zeros(b, num_future, c, h, w)


def _reconstruct(model: Any, reconstruct: Callable[..., Any], frames: Tensor, want_codes: bool,
                 returns_codes: bool) -> tuple[Tensor | None, Tensor | None]:
    """``(reconstruction or None, codes or None)`` of ``frames``, encoding once when ``reconstruct``
    takes ``return_codes`` (``returns_codes``; :meth:`LatentVideoModel.reconstruct`), else
    ``model.encode(frames).codes``."""
    if not want_codes:
        return reconstruct(frames), None
    if returns_codes:
        return reconstruct(frames, return_codes=True)
    recon = reconstruct(frames)
    return recon, (model.encode(frames).codes if recon is not None else None)


def _check_output(out: Tensor, expected: tuple[int, ...], what: str) -> None:
    if not isinstance(out, Tensor):
        raise TypeError(f"{what} must return a Tensor of shape {expected}; got {type(out).__name__}")
    check_frames(out, what)
    if tuple(out.shape) != expected:
        raise ValueError(f"{what} returned shape {tuple(out.shape)}; expected {expected}")


def _metric_keys(future_frames: int) -> set[str]:
    """Every key :func:`evaluate_frames` can compute for ``future_frames`` steps."""
    width = max(2, len(str(future_frames)))
    keys = {"test/num_sequences", "test/num_samples", "reconstruction/num_sequences", "reconstruction/codebook_usage",
            "reconstruction/perplexity", "reconstruction/sharpness", "test/sharpness", "test/fvd", "test/copy_last/fvd", *(f"reconstruction/{m}" for m in METRIC_NAMES)}
    for prefix in ("test/", "test/raw/", "test/sample/", "test/best_of_k/", *(f"test/{b}/" for b in BASELINES)):
        for m in METRIC_NAMES:
            keys.add(prefix + m)
            keys.update(f"{prefix}{m}/step_{k:0{width}d}" for k in range(1, future_frames + 1))
    keys.update(_gain_key(k, future_frames) for k in range(1, future_frames + 1))
    return keys


def _gain_key(step: int, future_frames: int) -> str:
    """``test/frame_gain/step_XX`` of future step ``step`` (1-based), numbered as the per-step metrics."""
    return f"test/frame_gain/step_{step:0{max(2, len(str(future_frames)))}d}"


def evaluate_frames(
    model: FramePredictor,
    dataset: Dataset,
    context_frames: int = 10,
    future_frames: int = 10,
    batch_size: int = 100,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    num_visualize: int = 8,
    max_sequences: int | None = None,
    progress: bool = True,
    extra_metrics: Mapping[str, Any] | None = None,
    num_samples: int = 1,
    reconstruct_sequences: int | None = None,
    fvd: FrechetVideoDistance | None = None,
    point_estimate: str = "sample",
    frame_gain: Tensor | None = None,
) -> dict[str, float]:
    """Score ``model.rollout`` on future frames, with baselines, per-step curves and pictures.

    Args:
        model: any object with ``rollout(context, num_future)`` mapping ``(B, Tc, C, H, W)`` in
            [0, 1] to ``(B, Tf, C, H, W)`` in [0, 1] (predictions are clamped to [0, 1] before
            scoring) and optionally ``reconstruct(frames)`` mapping ``(B, T, C, H, W)`` to the same
            shape (``None`` or a missing method skips ``reconstruction/*``). An ``nn.Module`` is moved
            to ``device`` and put in eval mode for the call (its train/eval mode is restored after).
            Runs under ``torch.no_grad()``; sampling randomness is the model's (seed beforehand).
        dataset: map-style dataset of dicts ``{"frames": (T, C, H, W)}`` float in [0, 1] with
            ``T = context_frames + future_frames`` and ``C`` in {1, 3}; read in order.
        context_frames, future_frames: ``Tc`` and ``Tf``.
        batch_size: sequences per rollout call (does not change the results).
        device: where frames are sent and the model runs.
        out_dir: folder that receives ``metrics.json`` (indent 2, sorted keys),
            ``predictions.gif`` and ``predictions.png``; created if missing. ``None``: write nothing.
        num_visualize: how many of the first sequences the GIF/PNG show (0: no pictures).
        max_sequences: score only the first ``max_sequences`` sequences (``None``: all).
        progress: show a rich progress bar.
        extra_metrics: merged into the returned dict and ``metrics.json`` (e.g. step, checkpoint).
        num_samples: ``k`` rollouts per context (for stochastic models); the pictures show the first,
            or the point estimate. A model with ``deterministic`` true gets one rollout (logged).
        reconstruct_sequences: score ``reconstruction/*`` on the first this many sequences only (``None``:
            all): the ceiling is a sanity figure, and encoding, decoding and scoring all ``T`` frames
            of every sequence can cost as much as the rollouts.
        fvd: score whole clips by FVD (``T >= 9`` frames; the first sample of each context, or the
            point estimate); ``None``: skip.
        point_estimate: ``"sample"`` (score each sample) | ``"mean"`` | ``"median"`` (score the
            per-pixel reduction of the ``k >= 2`` samples; :mod:`futurelat.evaluation.ensemble`).
        frame_gain: ``(Tf,)`` gains in [0, 1] that scale future step ``k`` of every rollout
            (:func:`~futurelat.evaluation.frame_gain.fit_frame_gain` fits them on held-out clips);
            ``None``: the rollouts as they are.

    Returns:
        Flat dict of floats (see :mod:`futurelat.evaluation.metrics` for units):

        - ``test/{mse,mae,ssim,psnr}`` and ``test/{metric}/step_01`` ... ``step_{Tf}``: the model
          (mean over the ``k`` samples, or the point estimate); ``test/sample/...`` the same keys
          for the samples when ``test/*`` is a point estimate; ``test/best_of_k/...`` the same
          keys for the per-sequence lowest-MSE sample, only when ``k > 1``; ``test/num_samples`` = ``k``;
        - with ``frame_gain``: ``test/raw/...``, the same keys for the unscaled rollouts (their point
          estimate when ``test/*`` is one), and ``test/frame_gain/step_XX``, the gains;
        - ``test/copy_last/...`` and ``test/zeros/...``: same keys for the two baselines;
        - ``reconstruction/{mse,ssim,psnr}``: reconstruction of all ``T`` frames (if available), of
          ``reconstruction/num_sequences`` sequences; for a discrete backbone also
          ``reconstruction/codebook_usage`` (share of the ``K`` codes used by those clips, in [0, 1])
          and ``reconstruction/perplexity`` (exp of their code entropy, in [1, K]);
          ``reconstruction/sharpness``: their high-frequency energy over the truth's
          (:func:`~futurelat.evaluation.metrics.sharpness_ratio`: 1 = as sharp, < 1 blurred);
        - ``test/sharpness``: the same ratio for the first sample's predicted future frames;
        - ``test/fvd``, ``test/copy_last/fvd`` (with ``fvd``, at least 2 sequences): FVD of
          context + future clips, >= 0, lower is better;
        - ``test/num_sequences``; plus ``extra_metrics``.

    Raises:
        ValueError: bad arguments (``frame_gain`` not ``(Tf,)`` in [0, 1]), an empty dataset, dataset frames of the wrong shape/range, a
            rollout/reconstruction of the wrong shape, or ``extra_metrics`` keys that collide with
            computed ones.
        TypeError: if ``model`` has no ``rollout`` or it returns something other than a tensor.
    """
    if not callable(getattr(model, "rollout", None)):
        raise TypeError(f"model ({type(model).__name__}) has no rollout(context, num_future) method")
    check_eval_arguments({"context_frames": context_frames, "future_frames": future_frames,
                          "batch_size": batch_size, "num_samples": num_samples}, num_visualize, max_sequences,
                         {"reconstruct_sequences": reconstruct_sequences})
    num_samples, point_estimate = futures_to_draw(model, num_samples, point_estimate)
    if frame_gain is not None:
        frame_gain = check_frame_gain(frame_gain, future_frames)

    if extra_metrics:
        clash = sorted(set(extra_metrics) & _metric_keys(future_frames))
        if clash:
            raise ValueError(f"extra_metrics keys collide with computed metrics: {clash}")

    total = len(dataset)
    if max_sequences is not None and max_sequences < total:
        dataset = Subset(dataset, range(max_sequences))
        total = max_sequences
    if total == 0:
        raise ValueError("dataset is empty: nothing to evaluate")

    device = torch.device(device)
    tc, tf = context_frames, future_frames
    if fvd is not None and tc + tf < MIN_FRAMES:
        log.info("FVD skipped: clips of %d frames, I3D needs at least %d", tc + tf, MIN_FRAMES)
        fvd = None

    accumulators = {"test/": MetricAccumulator()}
    if frame_gain is not None:
        accumulators["test/raw/"] = MetricAccumulator()
    ensemble = point_estimate != "sample"
    if ensemble:
        accumulators["test/sample/"] = MetricAccumulator()
    if num_samples > 1:
        accumulators["test/best_of_k/"] = MetricAccumulator()
    accumulators.update({f"test/{b}/": MetricAccumulator() for b in BASELINES})
    reconstruction_acc: MetricAccumulator | None = None
    reconstructed = 0
    reconstruct = getattr(model, "reconstruct", None)
    reconstruct = reconstruct if callable(reconstruct) else None
    returns_codes = reconstruct is not None and "return_codes" in inspect.signature(reconstruct).parameters
    codebook = getattr(getattr(model, "spec", None), "codebook_size", None)
    code_counts = torch.zeros(codebook, dtype=torch.long) if codebook and callable(getattr(model, "encode", None)) else None
    copy_last_features: list[Tensor] = []  # FVD of copy-last, against the real clips fvd holds
    energy = torch.zeros(4, dtype=torch.float64)  # high-frequency energy: prediction, future, reconstruction, clip
    shown: dict[str, list[Tensor]] = {"context": [], "target": [], "prediction": []}
    num_shown = 0

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                        collate_fn=collate_frames)
    start = 0
    with eval_mode_on(model, device), progress_bar("evaluate", progress) as bar, torch.no_grad():
        task = bar.add_task("rollouts", total=total)
        for frames in loader:
            check_frame_batch(frames, start, tc + tf)
            frames = frames.to(device)
            b = frames.shape[0]
            context, target = frames[:, :tc], frames[:, tc:]

            samples, raw = [], []
            for _ in range(num_samples):
                sample = model.rollout(context.clone(), tf)
                _check_output(sample, (b, tf, *frames.shape[2:]), "model.rollout(context, num_future)")
                if frame_gain is not None:
                    raw.append(sample.clamp(0, 1))
                    sample = apply_frame_gain(raw[-1], frame_gain)
                    if not ensemble:
                        accumulators["test/raw/"].update(frame_metrics(raw[-1], target))
                samples.append((frame_metrics(sample, target), sample))
                accumulators["test/sample/" if ensemble else "test/"].update(samples[-1][0])
            if num_samples > 1:
                accumulators["test/best_of_k/"].update(best_of_k([m for m, _ in samples], "mse"))
            prediction = samples[0][1]
            if ensemble:
                prediction = reduce_samples(torch.stack([x.clamp(0, 1) for _, x in samples]), point_estimate)
                accumulators["test/"].update(frame_metrics(prediction, target))
                if frame_gain is not None:
                    raw_estimate = reduce_samples(torch.stack(raw), point_estimate)
                    accumulators["test/raw/"].update(frame_metrics(raw_estimate, target))
            energy[:2] += torch.stack([frame_laplacian_energy(x.clamp(0, 1).float()).sum().cpu().double()
                                       for x in (prediction, target)])
            accumulators["test/copy_last/"].update(
                frame_metrics(copy_last_baseline(context, tf), target))
            accumulators["test/zeros/"].update(frame_metrics(zeros_baseline(context, tf), target))

            todo = b if reconstruct_sequences is None else min(b, reconstruct_sequences - reconstructed)
            if reconstruct is not None and todo > 0:
                recon, codes = _reconstruct(model, reconstruct, frames[:todo].clone(), code_counts is not None,
                                           returns_codes)
                if recon is None:
                    if reconstruction_acc is not None:
                        raise ValueError("model.reconstruct returned None after returning frames "
                                         f"for earlier batches (batch starting at {start})")
                    reconstruct = None  # no decoder: skip reconstruction/*
                else:
                    _check_output(recon, tuple(frames[:todo].shape), "model.reconstruct(frames)")
                    reconstruction_acc = reconstruction_acc or MetricAccumulator()
                    reconstruction_acc.update(frame_metrics(recon, frames[:todo]))
                    energy[2:] += torch.stack([frame_laplacian_energy(x.clamp(0, 1).float()).sum().cpu().double()
                                               for x in (recon, frames[:todo])])
                    reconstructed += todo
                    if codes is not None:
                        code_counts += torch.bincount(codes.flatten().cpu(), minlength=codebook)
            if fvd is not None:
                fvd.update(frames, torch.cat([context, prediction.clamp(0, 1)], dim=1))
                copy_last_features.append(fvd.features(torch.cat([context, copy_last_baseline(context, tf)], dim=1)))

            if num_shown < num_visualize:
                k = min(b, num_visualize - num_shown)
                shown["context"].append(context[:k].float().cpu())
                shown["target"].append(target[:k].float().cpu())
                shown["prediction"].append(prediction[:k].float().cpu())
                num_shown += k
            start += b
            bar.update(task, advance=b)

    reconstruction: dict[str, float] = {}
    if reconstruction_acc is not None:
        tok = reconstruction_acc.compute("reconstruction/", per_step=False)
        reconstruction = {k: v for k, v in tok.items() if k.split("/")[-1] in ("mse", "ssim", "psnr")}
        reconstruction["reconstruction/num_sequences"] = float(reconstructed)
        if energy[3] > 0:  # (flat truth: no ratio)
            reconstruction["reconstruction/sharpness"] = float(energy[2] / energy[3])
        if code_counts is not None and code_counts.sum() > 0:
            p = code_counts.double() / code_counts.sum()
            reconstruction["reconstruction/codebook_usage"] = float((code_counts > 0).double().mean())
            reconstruction["reconstruction/perplexity"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    if energy[1] > 0:
        reconstruction["test/sharpness"] = float(energy[0] / energy[1])
    if frame_gain is not None:
        reconstruction.update({_gain_key(k + 1, tf): float(g) for k, g in enumerate(frame_gain.tolist())})
    if fvd is not None and start >= 2:
        reconstruction["test/fvd"] = fvd.compute()
        reconstruction["test/copy_last/fvd"] = frechet_distance_of_features(fvd.real_features(),
                                                                            torch.cat(copy_last_features))
    metrics = collect_metrics(accumulators, num_sequences=start, num_samples=num_samples,
                              extra={**reconstruction, **(extra_metrics or {})})

    if out_dir is not None:
        out_dir = write_metrics(metrics, out_dir).parent
        if num_shown:
            vis = {k: torch.cat(v) for k, v in shown.items()}
            save_prediction_gif(vis["context"], vis["target"], vis["prediction"], out_dir / "predictions.gif")
            save_prediction_grid(vis["context"], vis["target"], vis["prediction"], out_dir / "predictions.png")
    return metrics


def summarize(metrics: Mapping[str, float]) -> str:
    """One line per scorer (model, baselines, reconstruction) with MSE / MAE / SSIM / PSNR, for logs."""
    rows = [("model", "test/"), ("unscaled", "test/raw/"), ("one sample", "test/sample/"), ("best of k", "test/best_of_k/"), *((b, f"test/{b}/") for b in BASELINES),
            ("reconstruction", "reconstruction/")]
    lines = []
    for label, prefix in rows:
        parts = [f"{m.upper()} {float(metrics[prefix + m]):.4g}" for m in METRIC_NAMES
                 if prefix + m in metrics]
        if parts:
            lines.append(f"{label:>10}: " + "  ".join(parts))
    return "\n".join(lines)
