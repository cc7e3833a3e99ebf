"""Pretrained weights from the Hugging Face Hub, offline-first: is a name a directory, is offline mode
on, does the Hub answer. Shared by the loaders that read a local cache or directory first and fail at
once, with a clear message, when the weights are missing and cannot be downloaded (V-JEPA 2,
:mod:`futurelat.models.backbones.vjepa2`; the perceptual loss, :mod:`futurelat.models.gan.perceptual`).
"""

from __future__ import annotations

import os
from pathlib import Path


def looks_like_path(name: str) -> bool:
    """A hub id is ``owner/name``; anything else with a separator (or ``.``/``~``) is a directory."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or Path(name).exists()


def offline_mode() -> bool:
    """huggingface_hub's offline mode, read now: its constant (set at import) or the environment variables."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable(repo_id: str) -> str | None:
    """Why ``repo_id`` cannot be downloaded now (offline mode, or the Hub does not answer), or ``None``.

    One HEAD request for its ``config.json``, without retries and with huggingface_hub's
    ``HF_HUB_ETAG_TIMEOUT`` (10 s by default): a machine without network is told in seconds,
    where a download would retry for minutes. An HTTP answer (e.g. 401 for a gated repo, 404)
    means the Hub is reachable: ``from_pretrained`` then reports it.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1)"
    timeout = constants.HF_HUB_ETAG_TIMEOUT
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        return f"the Hub answered {status}: {error}" if status is not None and status >= 500 else None
    except Exception as error:  # no connection: DNS, refused, proxy, or no answer within the timeout
        return f"the Hugging Face Hub cannot be reached ({type(error).__name__}: {error}; timeout {timeout} s)"
    return None
