"""Code priors' logits: their training loss, and codes drawn from them (greedy decoding or
ancestral sampling with temperature and top-k).

Shape notation: ``...`` any leading axes (e.g. ``(B,)`` for one token or ``(B, N)`` for a whole
frame of codes), ``K`` codebook size.

    sample_codes(logits)                                              # greedy argmax
    sample_codes(logits, greedy=False, temperature=0.8, top_k=50)     # ancestral sampling

Top-k sampling: Fan, Lewis & Dauphin 2018, "Hierarchical Neural Story Generation".
"""

from __future__ import annotations

import math
from dataclasses import asdict
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from futurelat.config.head import CodeSampling

#: Keys of a code prior's ``sampling`` dict (``head.params.sampling``) and their defaults
#: (:class:`futurelat.config.head.CodeSampling`).
SAMPLING_DEFAULTS: dict[str, Any] = asdict(CodeSampling())


def code_cross_entropy(logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                       count: int | None = None) -> dict[str, Tensor]:
    """Next-code loss of a prior: logits ``(..., K)`` against int64 targets ``(...)`` in ``[0, K)``.

    Returns ``loss`` (mean cross-entropy in nats per code, computed in float32), ``accuracy``
    (argmax = target, fraction in [0, 1]) and ``bits_per_token`` (loss / ln 2), all scalars.
    ``weight`` (broadcastable to ``targets``) and ``count`` score a sample of a larger set of codes:
    each code's cross-entropy and hit count ``weight`` times, summed, over ``count`` codes (an
    importance-sampled estimate of the full mean; :mod:`~futurelat.models.heads.objectives.patch_loss`).
    """
    flat = logits.reshape(-1, logits.shape[-1]).float()
    if weight is None:
        loss = F.cross_entropy(flat, targets.reshape(-1))
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == targets).float().mean()
    else:
        weight = weight.expand_as(targets)
        loss = (F.cross_entropy(flat, targets.reshape(-1), reduction="none") * weight.reshape(-1)).sum() / count
        with torch.no_grad():
            accuracy = ((logits.argmax(-1) == targets) * weight).sum() / count
    return {"loss": loss, "accuracy": accuracy, "bits_per_token": loss.detach() / math.log(2)}


def sampling_options(sampling: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a ``sampling`` mapping and fill in defaults → a plain dict with the keys above.

    Raises:
        ValueError: an unknown key, ``temperature <= 0``, ``top_k < 1``, ``steps < 1`` or
            ``choice_temperature < 0``; the message names the key.
    """
    options = dict(SAMPLING_DEFAULTS)
    if sampling is not None:
        unknown = sorted(set(sampling) - set(SAMPLING_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown sampling key(s) {unknown} (head.sampling); valid: {sorted(SAMPLING_DEFAULTS)}")
        options.update({key: sampling[key] for key in sampling})
    options["greedy"] = bool(options["greedy"])
    options["temperature"] = float(options["temperature"])
    if options["temperature"] <= 0:
        raise ValueError(f"head.sampling.temperature must be > 0; got {options['temperature']} "
                         "(use greedy: true for argmax decoding)")
    if options["top_k"] is not None:
        options["top_k"] = int(options["top_k"])
        if options["top_k"] < 1:
            raise ValueError(f"head.sampling.top_k must be >= 1 or null; got {options['top_k']}")
    options["steps"] = int(options["steps"])
    if options["steps"] < 1:
        raise ValueError(f"head.sampling.steps must be >= 1; got {options['steps']}")
    options["choice_temperature"] = float(options["choice_temperature"])
    if options["choice_temperature"] < 0:
        raise ValueError(f"head.sampling.choice_temperature must be >= 0; got {options['choice_temperature']}")
    options["mean_field"] = bool(options["mean_field"])
    if options["mean_field"] and options["greedy"]:
        raise ValueError("head.sampling.mean_field and head.sampling.greedy exclude each other: mean_field "
                         "averages over the codes' distribution, greedy keeps only its argmax; set "
                         "head.params.sampling.mean_field=false to decode argmax codes")
    return options


def draw_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of validated ``options`` that :func:`sample_codes` takes (``greedy``, ``temperature``, ``top_k``)."""
    return {key: options[key] for key in ("greedy", "temperature", "top_k")}


def code_probabilities(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
    """The distribution that ancestral sampling draws from: ``softmax(logits / temperature)`` over the
    ``top_k`` most likely codes (the rest 0) → float32 ``(..., K)``, each row summing to 1.

    Raises:
        ValueError: ``temperature <= 0`` or ``top_k < 1``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    num_codes = logits.shape[-1]
    flat = logits.reshape(-1, num_codes).float() / temperature  # (M, K)
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None; got {top_k}")
        if top_k < num_codes:
            kth = flat.topk(top_k, dim=-1).values[:, -1:]  # (M, 1), the k-th largest logit
            flat = flat.masked_fill(flat < kth, float("-inf"))
    return torch.softmax(flat, dim=-1).view(logits.shape)


def sample_codes(logits: Tensor, *, greedy: bool = True, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Draw one code per position from ``logits`` ``(..., K)`` → codes ``(...)`` int64 in ``[0, K)``.

    Args:
        logits: unnormalised log-probabilities, ``(..., K)``; positions are drawn independently.
        greedy: take the argmax (``temperature`` and ``top_k`` are then ignored).
        temperature: divides the logits before the softmax (> 0; < 1 sharpens).
        top_k: keep only the ``top_k`` most likely codes (``None``: all; clipped to ``K``).
        generator: random generator for reproducible draws (default: torch's global one).

    Raises:
        ValueError: ``temperature <= 0`` or ``top_k < 1``.
    """
    if greedy:
        return logits.argmax(dim=-1)
    num_codes = logits.shape[-1]
    probs = code_probabilities(logits, temperature=temperature, top_k=top_k).reshape(-1, num_codes)  # (M, K)
    # Inverse-CDF draw: one uniform per position against the cumulative probabilities. Same
    # distribution as torch.multinomial, which on CPU draws K exponentials per position (slower;
    # docs/ablations.md).
    cdf = probs.cumsum_(dim=-1)  # (M, K)
    uniform = torch.rand(cdf.shape[0], 1, device=cdf.device, generator=generator) * cdf[:, -1:]
    codes = torch.searchsorted(cdf, uniform, right=True).clamp_(max=num_codes - 1)  # (M, 1)
    return codes.view(logits.shape[:-1])
