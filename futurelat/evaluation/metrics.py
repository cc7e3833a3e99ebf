"""Frame-prediction metrics: MSE, MAE, SSIM and PSNR per frame, plus a streaming accumulator.

Conventions (those of OpenSTL, https://github.com/chengtan9907/OpenSTL, ``openstl/core/metrics.py``,
so numbers are comparable with the Moving MNIST tables there):

- Frames are ``(B, T, C, H, W)`` float with pixels in ``[0, 1]``. Predictions are clamped to
  ``[0, 1]`` before scoring (targets are not touched).
- Everything is scored on ONE channel: ``C = 3`` frames are converted to gray by averaging the
  three channels, ``C = 1`` frames are used as they are (:func:`to_gray`).
- **MSE / MAE**: per frame, the squared / absolute error SUMMED over the ``H·W`` pixels (not
  averaged), then averaged over frames and sequences. Unit: squared (absolute) pixel error in
  ``[0, 1]`` units, summed per frame; e.g. 64×64 Moving MNIST gives values in the hundreds.
- **SSIM**: :func:`torchmetrics.functional.image.structural_similarity_index_measure` with a
  gaussian window (kernel 11, sigma 1.5), ``data_range=1.0``, computed per frame and averaged.
  OpenSTL uses ``skimage.metrics.structural_similarity`` (uniform 7×7 window, no reflect padding);
  the two differ by up to ~0.09 on blurry frames, so compare SSIM only within one implementation.
- **PSNR**: per frame ``10·log10(1 / MSE_mean)`` in dB, where ``MSE_mean`` is the squared error
  AVERAGED over pixels; averaged over frames. A perfect frame (``MSE_mean = 0``) would be
  infinite; it is capped at :data:`PSNR_CAP_DB` = 100 dB (``MSE_mean`` floored at ``1e-10``).

All per-frame functions return ``(B, T)`` float tensors; :class:`MetricAccumulator` sums them
over batches (float64) so a whole test set is never held in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from futurelat.models.base import check_frames

#: Metric names, in the order they are reported.
METRIC_NAMES: tuple[str, ...] = ("mse", "mae", "ssim", "psnr")
#: PSNR of a perfect frame, in dB (``10·log10(1 / 1e-10)``).
PSNR_CAP_DB: float = 100.0
_MIN_MSE = 10 ** (-PSNR_CAP_DB / 10)  # 1e-10

SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5


def to_gray(frames: Tensor) -> Tensor:
    """``(B, T, C, H, W)`` with ``C`` in {1, 3} → ``(B, T, 1, H, W)`` float32.

    ``C = 3``: mean of the three channels (not luma weights, to match OpenSTL, which scores
    one-channel data). ``C = 1``: returned as is (as float32).

    Raises:
        ValueError: if ``frames`` is not a 5-d float tensor or ``C`` is not 1 or 3.
    """
    check_frames(frames)
    channels = frames.shape[2]
    frames = frames.float()
    if channels == 1:
        return frames
    if channels == 3:
        return frames.mean(dim=2, keepdim=True)
    raise ValueError(f"frames must have 1 or 3 channels (dim 2); got shape {tuple(frames.shape)}")


def _prepare(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Gray, float32, prediction clamped to [0, 1]; raises ``ValueError`` on a shape mismatch."""
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape (B, T, C, H, W); got "
            f"prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}"
        )
    return to_gray(prediction).clamp(0.0, 1.0), to_gray(target)


def frame_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-frame squared error summed over pixels: ``(B, T, C, H, W)`` ×2 → ``(B, T)``.

    OpenSTL's MSE (sum over ``C·H·W`` after conversion to one channel), prediction clamped to [0, 1].
    """
    p, t = _prepare(prediction, target)
    return (p - t).square().flatten(2).sum(-1)


def frame_mae(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-frame absolute error summed over pixels: ``(B, T, C, H, W)`` ×2 → ``(B, T)``."""
    p, t = _prepare(prediction, target)
    return (p - t).abs().flatten(2).sum(-1)


def frame_psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-frame PSNR in dB, ``10·log10(1 / mean squared error)``: → ``(B, T)``, capped at 100 dB."""
    p, t = _prepare(prediction, target)
    mse = (p - t).square().flatten(2).mean(-1).clamp_min(_MIN_MSE)
    return 10.0 * torch.log10(1.0 / mse)


def frame_ssim(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-frame SSIM (torchmetrics, gaussian kernel 11, sigma 1.5, data range 1): → ``(B, T)``.

    Frames must be at least 6×6 pixels (reflect padding of 5). Values are at most 1 (identical
    frames); see the module docstring for the difference from OpenSTL's skimage SSIM. On CPU the
    window's convolution skips oneDNN (:func:`_plain_cpu_convolution`): the same values, faster.
    """
    p, t = _prepare(prediction, target)
    b, n = p.shape[:2]
    with _plain_cpu_convolution(p.device):
        ssim = structural_similarity_index_measure(
            p.flatten(0, 1),
            t.flatten(0, 1),
            gaussian_kernel=True,
            sigma=SSIM_SIGMA,
            kernel_size=SSIM_KERNEL_SIZE,
            data_range=1.0,
            reduction="none",
        )
    return ssim.reshape(b, n)


@contextlib.contextmanager
def _plain_cpu_convolution(device: torch.device) -> Iterator[None]:
    """On CPU, run the block's convolutions with oneDNN (``torch.backends.mkldnn``) off; elsewhere nothing.

    torchmetrics' SSIM convolves ``5·N`` one-channel frames with one 11×11 window, which PyTorch's own
    CPU kernel computes several times faster than oneDNN, to float32 rounding (``benchmarks/bench_ssim.py``;
    figures in docs/results.md). Only the on/off switch is touched, and it is restored on exit.
    """
    if device.type != "cpu":
        yield
        return
    with torch.backends.mkldnn.flags(enabled=False, deterministic=None, allow_tf32=None):
        yield


def _blur_matrix(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(size, size)``: row ``i`` is the evaluation's gaussian window centred on pixel ``i``, with the
    reflect padding folded in, so ``M @ x`` blurs the rows of ``x`` as the padded convolution does."""
    pad = SSIM_KERNEL_SIZE // 2
    offsets = torch.arange(SSIM_KERNEL_SIZE, dtype=torch.float64) - pad
    window = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    window = window / window.sum()
    columns = torch.arange(size)[:, None] + torch.arange(SSIM_KERNEL_SIZE)[None]  # (size, K) in the padded image
    band = torch.zeros(size, size + 2 * pad, dtype=torch.float64).scatter_(1, columns, window.expand(size, -1))
    # Column j of the padded image is pixel |j - pad| (reflected at both ends): fold the pad into the map.
    source = (torch.arange(size + 2 * pad) - pad).abs()
    source = torch.where(source > size - 1, 2 * (size - 1) - source, source)
    return torch.zeros(size, size, dtype=torch.float64).index_add_(1, source, band).to(dtype=dtype, device=device)


def frame_ssim_fast(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-frame SSIM as :func:`frame_ssim` scores it, for training losses: ``(B, T, C, H, W)`` ×2 → ``(B, T)``.

    The same value as :func:`frame_ssim` (torchmetrics: gaussian window 11, sigma 1.5, reflect
    padding, data range 1, prediction clamped to [0, 1]; Wang et al. 2004), to float32 rounding,
    with the separable window applied as two small matrix products. On CPU, torchmetrics' grouped
    11×11 convolution takes 0.65 s forward and backward for 24 frames of 64×64 on one core; this
    takes milliseconds.

    Raises:
        ValueError: the shapes differ.
    """
    p, t = _prepare(prediction, target)
    height, width = p.shape[-2:]
    rows = _blur_matrix(height, p.dtype, p.device)  # (H, H)
    cols = _blur_matrix(width, p.dtype, p.device)   # (W, W)

    def blur(x: Tensor) -> Tensor:
        return rows @ x @ cols.T

    mu_p, mu_t = blur(p), blur(t)
    var_p = (blur(p * p) - mu_p**2).clamp_min(0.0)
    var_t = (blur(t * t) - mu_t**2).clamp_min(0.0)
    cov = blur(p * t) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim.flatten(2).mean(-1)


def frame_metrics(prediction: Tensor, target: Tensor) -> dict[str, Tensor]:
    """All of :data:`METRIC_NAMES` per frame: ``{"mse": (B, T), "mae": ..., "ssim": ..., "psnr": ...}``.

    Args:
        prediction: ``(B, T, C, H, W)`` float; clamped to [0, 1] before scoring.
        target: ``(B, T, C, H, W)`` float in [0, 1], same shape.

    Raises:
        ValueError: on a shape mismatch, a non-5-d/non-float tensor, or ``C`` not in {1, 3}.
    """
    p, t = _prepare(prediction, target)  # convert once; the per-metric functions are idempotent on it
    return {
        "mse": frame_mse(p, t),
        "mae": frame_mae(p, t),
        "ssim": frame_ssim(p, t),
        "psnr": frame_psnr(p, t),
    }


#: The 3×3 discrete Laplacian of :func:`frame_laplacian_energy`.
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def frame_laplacian_energy(frames: Tensor) -> Tensor:
    """Per-frame high-frequency energy: the mean squared 3×3 Laplacian of the gray frame over its valid
    (unpadded) positions. ``(B, T, C, H, W)`` → ``(B, T)``; frames need at least 3×3 pixels."""
    gray = to_gray(frames)
    b, t = gray.shape[:2]
    kernel = torch.tensor(LAPLACIAN, device=gray.device).view(1, 1, 3, 3)
    lap = torch.nn.functional.conv2d(gray.flatten(0, 1), kernel)  # (B·T, 1, H - 2, W - 2)
    return lap.square().flatten(1).mean(-1).reshape(b, t)


def sharpness_ratio(prediction: Tensor, target: Tensor) -> float:
    """High-frequency energy of ``prediction`` relative to ``target``: the summed
    :func:`frame_laplacian_energy` of the (clamped) prediction over that of the target.

    1 = as much fine detail as the truth; below 1 blurrier (an L1/L2-trained decoder's typical
    failure, which an adversarial loss counters); above 1 noisier or over-sharpened. Pair it with an
    error (PSNR): noise also raises it. ``(B, T, C, H, W)`` ×2 → a float (``inf`` for a flat target,
    ``nan`` when both are flat).

    Raises:
        ValueError: on a shape mismatch, a non-5-d/non-float tensor, or ``C`` not in {1, 3}.
    """
    p, t = _prepare(prediction, target)
    return float(frame_laplacian_energy(p).sum() / frame_laplacian_energy(t).sum())


class MetricAccumulator:
    """Streaming mean of per-frame metrics, overall and per time step.

    Call :meth:`update` with the ``(B, T)`` tensors of :func:`frame_metrics` for each batch;
    :meth:`compute` returns the means over all sequences seen. Sums are kept in float64 on the
    CPU (``T`` numbers per metric), so memory does not grow with the test set.

    Example::

        acc = MetricAccumulator()
        for pred, target in batches:
            acc.update(frame_metrics(pred, target))
        acc.compute("test/")   # {"test/mse": ..., "test/mse/step_01": ..., ...}
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self.num_sequences = 0
        self.num_steps: int | None = None

    def update(self, per_frame: Mapping[str, Tensor]) -> None:
        """Add one batch of per-frame values ``{name: (B, T)}`` (all with the same ``B, T``).

        Raises:
            ValueError: if the tensors are not 2-d, disagree in shape, or ``T`` or the metric
                names differ from earlier batches.
        """
        shapes = {name: tuple(v.shape) for name, v in per_frame.items()}
        if not shapes or len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
            raise ValueError(f"per-frame metrics must all be (B, T) tensors; got shapes {shapes}")
        b, t = next(iter(shapes.values()))
        if self.num_steps is None:
            self.num_steps = t
            self._sums = {name: torch.zeros(t, dtype=torch.float64) for name in per_frame}
        elif t != self.num_steps or set(per_frame) != set(self._sums):
            raise ValueError(
                f"batch has metrics {sorted(per_frame)} over {t} steps; earlier batches had "
                f"{sorted(self._sums)} over {self.num_steps} steps"
            )
        for name, values in per_frame.items():
            self._sums[name] += values.detach().to("cpu", torch.float64).sum(0)
        self.num_sequences += b

    def compute(self, prefix: str = "", per_step: bool = True) -> dict[str, float]:
        """Means as a flat dict of floats.

        Keys: ``f"{prefix}{name}"`` (mean over frames and sequences) and, with ``per_step``,
        ``f"{prefix}{name}/step_{k:02d}"`` for ``k = 1..T`` (mean over sequences at step ``k``;
        the step number is zero-padded to at least two digits). The mean of the per-step values
        equals the overall value.

        Raises:
            RuntimeError: if :meth:`update` was never called.
        """
        if self.num_sequences == 0 or self.num_steps is None:
            raise RuntimeError("MetricAccumulator.compute() called before any update()")
        width = max(2, len(str(self.num_steps)))
        out: dict[str, float] = {}
        for name in self._sums:
            per_step_mean = self._sums[name] / self.num_sequences
            out[f"{prefix}{name}"] = float(per_step_mean.mean())
            if per_step:
                for k, value in enumerate(per_step_mean.tolist(), start=1):
                    out[f"{prefix}{name}/step_{k:0{width}d}"] = float(value)
        return out
