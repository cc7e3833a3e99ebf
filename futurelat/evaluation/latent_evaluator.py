"""The latent-space evaluator: a head's rollouts scored against the encoder's latents of the future.

For backbones with no pixel decoder (V-JEPA 2) :func:`evaluate_frames
<futurelat.evaluation.evaluator.evaluate_frames>` cannot run; :func:`evaluate_latents` scores
``model.head.rollout`` on latents instead, with the metrics of
:mod:`futurelat.evaluation.latent_metrics` (L1, MSE, cosine), per future step and overall, and
pictures from :mod:`futurelat.evaluation.latent_visualize` (PCA colors). On the same sequences it
scores:

- ``copy_last``: every future latent frame is the last context latent frame;
- any ``extra_baselines``, e.g. V-JEPA 2's own pretrained predictor, by name. A baseline is a
  callable ``fn(inputs: BaselineInputs) -> (B, Tf', N, D)``; one that needs pixels (the V-JEPA 2
  predictor encodes its own context) is wrapped in :class:`FramesBaseline` and skipped, with a
  warning, when the dataset holds cached latents without frames.

Counts are in LATENT frames (``Tc'``, ``Tf'``): with frames items the dataset's clips must hold
``(Tc' + Tf') · temporal_downsample`` frames. A caller that knows frame counts converts with
``context_latents = context_frames // model.spec.temporal_downsample``.

``num_samples = k`` draws ``k`` rollouts per context: ``test/*`` is their mean, ``test/best_of_k/*``
the per-sequence sample with the lowest mean L1 (an oracle pick, as in ``evaluate_frames``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from futurelat.evaluation.checks import check_eval_arguments, check_frame_batch
from futurelat.evaluation.latent_metrics import LATENT_METRIC_NAMES, check_latents, latent_metrics
from futurelat.evaluation.latent_visualize import save_latent_grid
from futurelat.evaluation.metrics import MetricAccumulator
from futurelat.evaluation.ensemble import futures_to_draw, point_estimate as reduce_samples
from futurelat.evaluation.results import best_of_k, collect_metrics, write_metrics
from futurelat.models.base import Latents, LatentSpec
from futurelat.utils.modes import eval_mode_on
from futurelat.utils.progress import progress_bar

log = logging.getLogger(__name__)

#: Baselines always scored.
LATENT_BASELINES: tuple[str, ...] = ("copy_last",)
#: The metric that ranks samples for ``test/best_of_k/*``.
BEST_OF_K_KEY = "l1"
#: The picture written in ``out_dir`` (beside ``metrics.json``).
PICTURE_FILE = "latent_predictions.png"
#: Dataset item keys read by :func:`collate_latent_items`.
ITEM_KEYS: tuple[str, ...] = ("frames", "latents", "codes")
_RESERVED_NAMES = {"best_of_k", *LATENT_BASELINES, *LATENT_METRIC_NAMES, "num_sequences", "num_samples"}


# ---------------------------------------------------------------------------------------------
# Model and baseline contracts
# ---------------------------------------------------------------------------------------------


class LatentPredictor(Protocol):
    """What :func:`evaluate_latents` needs (a :class:`~futurelat.models.latent_video_model.LatentVideoModel`).

    - ``spec``: the :class:`LatentSpec` (``N``, ``D``, token grid, temporal downsampling);
    - ``head.rollout(context: Latents (B, Tc', N, D), num_future) -> Latents (B, num_future, N, D)``;
    - ``encode(frames (B, T, C, H, W) in [0, 1]) -> Latents (B, T', N, D)``: only for frames items;
    - ``backbone.embed_codes(codes (B, Tf', N)) -> (B, Tf', N, D)``: only for heads that predict
      codes and return empty ``(B, Tf', N, 0)`` latents (token priors on a discrete backbone).
    """

    spec: LatentSpec
    head: Any

    def encode(self, frames: Tensor) -> Latents: ...


@dataclass(frozen=True)
class BaselineInputs:
    """What an extra baseline receives for one batch (all on the evaluation device).

    Attributes:
        context: :class:`Latents` ``(B, Tc', N, D)`` float (with ``codes`` ``(B, Tc', N)`` when the
            backbone/cache provides them).
        num_future: ``Tf'``, latent frames to predict.
        frames: context frames ``(B, Tc, C, H, W)`` in [0, 1], ``Tc = Tc' · temporal_downsample``
            (never the future frames), or ``None`` when the items are cached latents without frames.
    """

    context: Latents
    num_future: int
    frames: Tensor | None


class FramesBaseline:
    """Adapts ``fn(context_frames (B, Tc, C, H, W), num_future_latents) -> (B, Tf', N, D)`` to a baseline.

    Marked ``needs_frames = True``: :func:`evaluate_latents` skips it (with a warning) on cached
    latents without frames. For V-JEPA 2: ``FramesBaseline(backbone.predict_future)``.
    """

    needs_frames = True

    def __init__(self, fn: Callable[[Tensor, int], Tensor]):
        if not callable(fn):
            raise TypeError(f"FramesBaseline needs a callable; got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, inputs: BaselineInputs) -> Tensor:
        return self.fn(inputs.frames, inputs.num_future)


def copy_last_latents(context: Tensor, num_future: int) -> Tensor:
    """Repeat the last context latent frame: ``(B, Tc', N, D)`` → ``(B, num_future, N, D)``."""
    return context[:, -1:].expand(-1, num_future, -1, -1)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def collate_latent_items(items: list[Mapping[str, Any]]) -> dict[str, Tensor]:
    """Stack the :data:`ITEM_KEYS` of dataset items into a batch; other keys are ignored.

    Items hold ``"frames"`` ``(T, C, H, W)`` float in [0, 1] and/or ``"latents"`` ``(T', N, D)``
    float (a latent cache), optionally with ``"codes"`` ``(T', N)`` int64. Returns
    ``{"frames": (B, T, C, H, W), "latents": (B, T', N, D), "codes": (B, T', N)}`` restricted to the
    keys present.

    Raises:
        ValueError: an item is not a dict, has neither ``frames`` nor ``latents``, items disagree on
            which keys they have, or a key's shapes differ within the batch.
    """
    if not all(isinstance(item, Mapping) for item in items):
        bad = next(type(item).__name__ for item in items if not isinstance(item, Mapping))
        raise ValueError(f"dataset items must be dicts with 'frames' (T, C, H, W) or 'latents' (T', N, D); got {bad}")
    present = [tuple(k for k in ITEM_KEYS if k in item) for item in items]
    if len(set(present)) != 1:
        raise ValueError(f"dataset items in one batch have different keys among {ITEM_KEYS}: {sorted(set(present))}")
    keys = present[0]
    if "frames" not in keys and "latents" not in keys:
        raise ValueError("dataset items need 'frames' (T, C, H, W) or 'latents' (T', N, D); "
                         f"got keys {sorted(items[0])}")
    batch = {}
    for key in keys:
        values = [torch.as_tensor(item[key]) for item in items]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(f"dataset '{key}' have different shapes within a batch: {sorted(shapes)}")
        batch[key] = torch.stack(values)
    return batch


def _check_cached(batch: Mapping[str, Tensor], start: int, total: int, spec: LatentSpec) -> None:
    """Validate cached ``latents``/``codes`` of a batch; errors name the dataset slice and key."""
    b = batch["latents"].shape[0]
    where = f"dataset[{start}:{start + b}]"
    _check_latent_shape(batch["latents"], f"{where}['latents']", total, spec)
    codes = batch.get("codes")
    if codes is not None and (codes.dtype != torch.int64 or tuple(codes.shape) != tuple(batch["latents"].shape[:3])):
        raise ValueError(f"{where}['codes'] must be int64 (B, T', N) = {tuple(batch['latents'].shape[:3])}; "
                         f"got dtype={codes.dtype}, shape={tuple(codes.shape)}")


def _check_latent_shape(latents: Tensor, where: str, total: int, spec: LatentSpec) -> None:
    check_latents(latents, where)
    _, t, n, d = latents.shape
    if t != total or n != spec.tokens_per_frame or d != spec.latent_dim:
        raise ValueError(f"{where} has shape {tuple(latents.shape)}; expected (B, T'={total}, "
                         f"N={spec.tokens_per_frame}, D={spec.latent_dim}): T' = context_latents + "
                         f"future_latents, N and D from model.spec")


def _as_latents(model: Any, out: Any, expected: tuple[int, ...], what: str) -> Tensor:
    """A rollout/baseline output (:class:`Latents` or tensor) as a checked ``(B, Tf', N, D)`` tensor.

    Code-only predictions (empty ``(B, Tf', N, 0)`` latents plus ``codes``) are embedded with
    ``model.backbone.embed_codes``.
    """
    if isinstance(out, Latents):
        latents = out.latents
        if latents.shape[-1] == 0 and out.codes is not None:
            embed = getattr(getattr(model, "backbone", None), "embed_codes", None)
            if not callable(embed):
                raise ValueError(f"{what} returned only codes {tuple(out.codes.shape)} and model.backbone "
                                 "has no embed_codes(codes) to turn them into latents")
            latents = embed(out.codes)
    elif isinstance(out, Tensor):
        latents = out
    else:
        raise TypeError(f"{what} must return Latents or a tensor of shape {expected}; got {type(out).__name__}")
    check_latents(latents, what)
    if tuple(latents.shape) != expected:
        raise ValueError(f"{what} returned latents of shape {tuple(latents.shape)}; "
                         f"expected (B, Tf', N, D) = {expected}")
    return latents


def latent_metric_keys(future_latents: int, baselines: Iterable[str] = ()) -> set[str]:
    """Every key :func:`evaluate_latents` can compute for ``Tf'`` steps and the named extra baselines."""
    width = max(2, len(str(future_latents)))
    keys = {"test/num_sequences", "test/num_samples"}
    scorers = ("", "sample/", "best_of_k/", *(f"{b}/" for b in (*LATENT_BASELINES, *baselines)))
    for scorer in scorers:
        for m in LATENT_METRIC_NAMES:
            keys.add(f"test/{scorer}{m}")
            keys.update(f"test/{scorer}{m}/step_{k:0{width}d}" for k in range(1, future_latents + 1))
    return keys


def _check_arguments(model: Any, context_latents: int, future_latents: int, batch_size: int, num_samples: int,
                     num_visualize: int, max_sequences: int | None,
                     extra_baselines: Mapping[str, Callable] | None) -> None:
    if not callable(getattr(getattr(model, "head", None), "rollout", None)):
        raise TypeError(f"model ({type(model).__name__}) has no head.rollout(context, num_future) method")
    if not isinstance(getattr(model, "spec", None), LatentSpec):
        raise TypeError(f"model ({type(model).__name__}) has no spec: LatentSpec (N, D, grid, temporal_downsample)")
    check_eval_arguments({"context_latents": context_latents, "future_latents": future_latents,
                          "batch_size": batch_size, "num_samples": num_samples}, num_visualize, max_sequences)
    for name, fn in (extra_baselines or {}).items():
        if not isinstance(name, str) or not name or "/" in name or name in _RESERVED_NAMES:
            raise ValueError(f"extra_baselines name {name!r} must be a non-empty string without '/' and not one "
                             f"of {sorted(_RESERVED_NAMES)}")
        if not callable(fn):
            raise TypeError(f"extra_baselines[{name!r}] must be callable(BaselineInputs); got {type(fn).__name__}")


# ---------------------------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------------------------


def evaluate_latents(
    model: LatentPredictor,
    dataset: Dataset,
    *,
    context_latents: int,
    future_latents: int,
    batch_size: int = 100,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    num_visualize: int = 8,
    max_sequences: int | None = None,
    progress: bool = True,
    num_samples: int = 1,
    extra_baselines: Mapping[str, Callable[[BaselineInputs], Tensor]] | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
    point_estimate: str = "sample",
) -> dict[str, float]:
    """Score ``model.head.rollout`` on future latents, with baselines, per-step curves and a PCA picture.

    Args:
        model: see :class:`LatentPredictor`. An ``nn.Module`` is moved to ``device`` and put in eval
            mode for the call (mode restored after). Runs under ``torch.no_grad()``; sampling
            randomness is the model's (seed beforehand).
        dataset: map-style dataset, read in order, of dicts with either
            ``"frames"`` ``(T, C, H, W)`` float in [0, 1], ``T = (Tc' + Tf') · spec.temporal_downsample``
            (encoded with ``model.encode``), or ``"latents"`` ``(Tc' + Tf', N, D)`` float (a latent
            cache; optional ``"codes"`` ``(Tc' + Tf', N)`` int64 for heads that read codes). When an
            item has both, the cached latents are used and the context frames only feed frame baselines.
        context_latents, future_latents: ``Tc'`` and ``Tf'``, counted in LATENT frames.
        batch_size: sequences per rollout call (does not change the results).
        device: where data are sent and the model runs.
        out_dir: receives ``metrics.json`` (indent 2, sorted keys) and ``latent_predictions.png``
            (:func:`~futurelat.evaluation.latent_visualize.save_latent_grid`: rows true / pred / copy,
            PCA fitted on the shown sequences' true latents); created if missing. ``None``: write nothing.
        num_visualize: how many of the first sequences the picture shows (0: no picture).
        max_sequences: score only the first ``max_sequences`` sequences (``None``: all).
        progress: show a rich progress bar.
        num_samples: ``k`` rollouts per context; the picture shows the first, or the point estimate.
            A model with ``deterministic`` true gets one rollout (logged).
        point_estimate: ``"sample"`` (score each sample) | ``"mean"`` | ``"median"`` (score the
            entry-wise reduction of the ``k >= 2`` sampled latents; :mod:`futurelat.evaluation.ensemble`).
        extra_baselines: ``{name: fn}``, ``fn(BaselineInputs) -> (B, Tf', N, D)`` tensor or
            :class:`Latents`; scored as ``test/{name}/*``. A callable with ``needs_frames = True``
            (:class:`FramesBaseline`) is skipped, with a warning, when items have no ``frames``.
        extra_metrics: merged into the returned dict and ``metrics.json`` (e.g. step, checkpoint).

    Returns:
        Flat dict of floats (units in :mod:`futurelat.evaluation.latent_metrics`):

        - ``test/{l1,mse,cosine}`` and ``test/{metric}/step_01`` ... ``step_{Tf'}``: the model (mean
          over the ``k`` samples, or the point estimate); ``test/sample/...`` the same keys for the
          samples when ``test/*`` is a point estimate; ``test/best_of_k/...`` the same keys for each sequence's
          lowest-L1 sample, only when ``k > 1``; ``test/num_samples`` = ``k``;
        - ``test/copy_last/...`` and ``test/{name}/...`` for each extra baseline that ran;
        - ``test/num_sequences``; plus ``extra_metrics``.

    Raises:
        ValueError: bad arguments or baseline names, an empty dataset, items of the wrong keys/shape/
            range (the message names the dataset slice and key), a rollout/baseline of the wrong
            shape, or ``extra_metrics`` keys that collide with computed ones.
        TypeError: ``model`` lacks ``head.rollout`` or ``spec``, a baseline is not callable, or a
            rollout returns something other than Latents/a tensor.
    """
    _check_arguments(model, context_latents, future_latents, batch_size, num_samples, num_visualize,
                     max_sequences, extra_baselines)
    num_samples, point_estimate = futures_to_draw(model, num_samples, point_estimate)
    baselines = dict(extra_baselines or {})
    if extra_metrics:
        clash = sorted(set(extra_metrics) & latent_metric_keys(future_latents, baselines))
        if clash:
            raise ValueError(f"extra_metrics keys collide with computed metrics: {clash}")

    total = len(dataset)
    if max_sequences is not None and max_sequences < total:
        dataset, total = Subset(dataset, range(max_sequences)), max_sequences
    if total == 0:
        raise ValueError("dataset is empty: nothing to evaluate")

    device = torch.device(device)
    spec: LatentSpec = model.spec
    tc, tf, step = context_latents, future_latents, spec.temporal_downsample
    accumulators = {"test/": MetricAccumulator()}
    ensemble = point_estimate != "sample"
    if ensemble:
        accumulators["test/sample/"] = MetricAccumulator()
    if num_samples > 1:
        accumulators["test/best_of_k/"] = MetricAccumulator()
    shown: dict[str, list[Tensor]] = {"true": [], "predicted": [], "copy_last": []}
    num_shown, start, item_keys = 0, 0, None

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                        collate_fn=collate_latent_items)
    with eval_mode_on(model, device), progress_bar("evaluate", progress) as bar, torch.no_grad():
        task = bar.add_task("latent rollouts", total=total)
        for batch in loader:
            if item_keys is None:
                item_keys = tuple(batch)
                baselines = _runnable(baselines, "frames" in batch)
                accumulators.update({f"test/{name}/": MetricAccumulator() for name in (*LATENT_BASELINES, *baselines)})
            elif tuple(batch) != item_keys:
                raise ValueError(f"dataset items from index {start} have keys {tuple(batch)}; earlier items had "
                                 f"{item_keys} (a dataset must be all frames or all cached latents)")
            frames = batch.get("frames")
            if frames is not None:
                check_frame_batch(frames, start, (tc + tf) * step)
                frames = frames.to(device)
            if "latents" in batch:
                _check_cached(batch, start, tc + tf, spec)
                codes = batch.get("codes")
                z = Latents(batch["latents"].to(device, torch.float32), None if codes is None else codes.to(device))
            else:
                z = model.encode(frames)
                _check_latent_shape(z.latents, "model.encode(frames)", tc + tf, spec)
            b, _, n, d = z.latents.shape
            context, target = z[:tc], z.latents[:, tc:]
            expected = (b, tf, n, d)

            samples, drawn = [], []
            for _ in range(num_samples):
                fresh = Latents(context.latents.clone(), None if context.codes is None else context.codes.clone())
                predicted = _as_latents(model, model.head.rollout(fresh, tf), expected,
                                        "model.head.rollout(context, num_future)")
                drawn.append(predicted)
                samples.append(latent_metrics(predicted, target))
                accumulators["test/sample/" if ensemble else "test/"].update(samples[-1])
            if num_samples > 1:
                accumulators["test/best_of_k/"].update(best_of_k(samples, BEST_OF_K_KEY))
            first = drawn[0]  # the picture shows the first sample, or the point estimate
            if ensemble:
                first = reduce_samples(torch.stack(drawn), point_estimate)
                accumulators["test/"].update(latent_metrics(first, target))
            copy_last = copy_last_latents(context.latents, tf)
            accumulators["test/copy_last/"].update(latent_metrics(copy_last, target))
            inputs = BaselineInputs(context=context, num_future=tf,
                                    frames=None if frames is None else frames[:, :tc * step])
            for name, fn in baselines.items():
                out = _as_latents(model, fn(inputs), expected, f"extra_baselines[{name!r}]")
                accumulators[f"test/{name}/"].update(latent_metrics(out, target))

            if num_shown < num_visualize:
                k = min(b, num_visualize - num_shown)
                for key, value in (("true", z.latents), ("predicted", first), ("copy_last", copy_last)):
                    shown[key].append(value[:k].float().cpu())
                num_shown += k
            start += b
            bar.update(task, advance=b)

    metrics = collect_metrics(accumulators, num_sequences=start, num_samples=num_samples, extra=extra_metrics)

    if out_dir is not None:
        write_metrics(metrics, out_dir)
        if num_shown:
            vis = {k: torch.cat(v) for k, v in shown.items()}
            save_latent_grid(vis["true"], vis["predicted"], tc, spec.grid, Path(out_dir) / PICTURE_FILE,
                             copy_last=vis["copy_last"])
    return metrics


def _runnable(baselines: dict[str, Callable], has_frames: bool) -> dict[str, Callable]:
    """The baselines that can run; those needing frames are dropped (with a warning) without frames."""
    if has_frames:
        return baselines
    skipped = [name for name, fn in baselines.items() if getattr(fn, "needs_frames", False)]
    if skipped:
        log.warning("skipping extra baseline(s) %s: they need frames and the dataset items are cached "
                    "latents without 'frames'", ", ".join(skipped))
    return {name: fn for name, fn in baselines.items() if name not in skipped}


def summarize_latents(metrics: Mapping[str, float]) -> str:
    """One line per scorer (model, best of k, copy_last, extra baselines) with L1 / MSE / cosine, for logs."""
    scorers = [("model", "test/"), ("one sample", "test/sample/"), ("best of k", "test/best_of_k/"), ("copy_last", "test/copy_last/")]
    known = {prefix for _, prefix in scorers}
    for key in sorted(metrics):
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "test" and parts[2] == "l1" and f"test/{parts[1]}/" not in known:
            scorers.append((parts[1], f"test/{parts[1]}/"))
    rows = [(label, [f"{m.upper()} {float(metrics[prefix + m]):.4g}" for m in LATENT_METRIC_NAMES
                     if prefix + m in metrics]) for label, prefix in scorers]
    rows = [(label, parts) for label, parts in rows if parts]
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label:>{width}}: " + "  ".join(parts) for label, parts in rows)
