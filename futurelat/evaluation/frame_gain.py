"""A gain per future step: the least-squares shrinkage of a model's predicted frames toward black.

A prior's rollout draws each future frame at full ink even where it is unsure of it (a mean-field
rollout snaps its expected codebook vectors to codes, and the decoder draws codes as strokes), so
its error grows with the horizon faster than its knowledge falls: on Moving MNIST the default job's
tenth future frame scores a higher MSE than a black frame. The MSE-optimal multiple of a prediction
``p`` of a frame ``y`` is ``g = <p, y> / <p, p>``: the regression of the truth on the prediction
through the origin, fitted once per future step ``k`` over held-out clips,

    g_k = sum_i <p_ik, y_ik> / sum_i <p_ik, p_ik>,   clamped to [0, 1],

and the reported frame ``k`` is ``g_k * p_k``. This is post-hoc calibration (as temperature
scaling calibrates a classifier: Guo et al. 2017, arXiv:1706.04599) with the James-Stein idea of
shrinking an uncertain estimate toward a fixed point (here black, the background of the frames):
strokes keep their shapes and places and fade as the model's own rollouts say its later frames are
less often right. Black stays black, so it does not add the grey haze that blurs a regression and
costs SSIM. Gains above 1 (a model that under-draws) are clamped to 1: the frames are clamped to
[0, 1], where brightening is no longer linear.

:func:`fit_frame_gain` fits the gains on clips other than the ones scored: ``python -m
futurelat.main`` takes the last ``eval.frame_gain_sequences`` clips of the training split, which a
run on a generated or large training set has seldom or never seen (never the test clips);
:func:`~futurelat.evaluation.evaluator.evaluate_frames` applies them (``frame_gain``) and keeps the
unscaled rollout's scores as ``test/raw/*``. Measured effect: docs/results.md.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from futurelat.evaluation.checks import check_frame_batch, collate_frames
from futurelat.utils.modes import eval_mode_on
from futurelat.utils.progress import progress_bar


def check_frame_gain(gain: Tensor, future_frames: int) -> Tensor:
    """``gain`` as float32 ``(Tf,)``, each in [0, 1]; ``ValueError`` naming the shape or values otherwise."""
    if not isinstance(gain, Tensor) or gain.ndim != 1 or gain.shape[0] != future_frames:
        shape = tuple(gain.shape) if isinstance(gain, Tensor) else type(gain).__name__
        raise ValueError(f"frame_gain must be a tensor of shape ({future_frames},), one gain per future step; got {shape}")
    if not bool(torch.isfinite(gain).all()) or bool((gain < 0).any()) or bool((gain > 1).any()):
        raise ValueError(f"frame_gain values must be finite and in [0, 1]; got {gain.tolist()}")
    return gain.float()


def apply_frame_gain(frames: Tensor, gain: Tensor) -> Tensor:
    """Frames ``(B, Tf, C, H, W)`` in [0, 1] times ``gain`` ``(Tf,)`` per future step, same shape and dtype."""
    return frames * gain.to(device=frames.device, dtype=frames.dtype).view(1, -1, 1, 1, 1)


@torch.no_grad()
def fit_frame_gain(model, dataset: Dataset, context_frames: int, future_frames: int, *, batch_size: int = 100,
                   device: str | torch.device = "cpu", progress: bool = True) -> Tensor:
    """Least-squares gains ``(Tf,)`` in [0, 1] of ``model.rollout`` on every clip of ``dataset`` (module docstring).

    Args:
        model: ``rollout(context (B, Tc, C, H, W), Tf) -> (B, Tf, C, H, W)``, frames in [0, 1] (clamped
            here); one rollout per clip (a sampled model: one sample, whose gain also scales its other
            samples and their per-pixel mean or median).
        dataset: map-style, items ``{"frames": (Tc + Tf, C, H, W)}`` in [0, 1]: held-out clips, not the test set.
        context_frames, future_frames: ``Tc`` and ``Tf``.
        batch_size: clips per rollout (does not change the result). device: where the model runs.
        progress: show a progress bar.

    Returns:
        float32 ``(Tf,)``: ``sum <p, y> / sum <p, p>`` per step, clamped to [0, 1]; 1 where every
        prediction of that step is black (no ink to scale).

    Raises:
        ValueError: an empty dataset, or frames of the wrong shape or range.
    """
    if len(dataset) == 0:
        raise ValueError("fit_frame_gain: the dataset is empty; no clips to fit the gains on")
    tc, tf = context_frames, future_frames
    cross = torch.zeros(tf, dtype=torch.float64)
    power = torch.zeros(tf, dtype=torch.float64)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                        collate_fn=collate_frames)
    start = 0
    with eval_mode_on(model, device), progress_bar("frame gain", progress) as bar:
        task = bar.add_task("rollouts", total=len(dataset))
        for frames in loader:
            check_frame_batch(frames, start, tc + tf)
            frames = frames.to(device)
            prediction = model.rollout(frames[:, :tc].clone(), tf).clamp(0, 1).double()
            target = frames[:, tc:].double()
            cross += (prediction * target).sum((0, 2, 3, 4)).cpu()
            power += prediction.square().sum((0, 2, 3, 4)).cpu()
            start += frames.shape[0]
            bar.update(task, advance=frames.shape[0])
    gain = torch.where(power > 0, cross / power.clamp(min=1e-12), torch.ones_like(power))
    return gain.clamp(0, 1).float()
