"""Pretrained weights from the Hugging Face Hub, offline-first: is a name a directory, is offline mode
on, does the Hub answer. Shared by the loaders that read a local cache or directory first and fail at
once, with a clear message, when the weights are missing and cannot be downloaded (V-JEPA 2,
:mod:`futurelat.models.backbones.vjepa2`; the perceptual loss, :mod:`futurelat.models.gan.perceptual`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


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


@dataclass(frozen=True)
class WeightsSource:
    """How the errors of :func:`load_offline_first` name one kind of pretrained weights.

    ``what``: e.g. ``"V-JEPA 2 weights"``. ``key`` / ``cache_key``: the config keys of the id or
    directory and of the hub cache. ``saved_by``: what writes such a directory. ``example``: a hub
    id. ``contents``: what a directory must hold. ``tail``: a last sentence (other ids, a way around).
    """

    what: str
    key: str
    cache_key: str
    saved_by: str
    example: str
    contents: str
    tail: str = ""


def missing_weights_message(source: WeightsSource, pretrained: str, cache_dir: str | None, reason: str) -> str:
    """Why ``pretrained`` is neither cached nor downloadable, and every way to get it."""
    from huggingface_hub import constants

    where = cache_dir or constants.HF_HUB_CACHE
    return (
        f"{source.what} '{pretrained}' ({source.key}) are not in the local Hugging Face cache ({where}) and "
        f"cannot be downloaded: {reason}. futurelat downloads missing weights into that cache when the Hub "
        f"answers and offline mode is off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE unset); otherwise it fails here "
        f"at once instead of retrying. On a machine with internet run `hf download {pretrained}` (or "
        f"`huggingface-cli download {pretrained}`) and copy the cache here (HF_HOME / {source.cache_key}), or save "
        f"the model to a directory and set {source.key}=/path/to/dir (if {pretrained!r} was meant as a directory, "
        f"it does not exist).{' ' + source.tail if source.tail else ''}"
    )


def load_offline_first(load: Callable[[str, bool], T], pretrained: str, cache_dir: str | None,
                       source: WeightsSource) -> T:
    """``load(name_or_dir, local_files_only)`` (a ``from_pretrained``) of a directory or a hub id: the
    local cache first, then a download unless offline mode is on or the Hub does not answer
    (:func:`hub_unreachable`), in which case the error comes at once, never after network retries.

    Raises:
        FileNotFoundError: the directory does not exist or holds no model, or the hub id is not cached
            and cannot be downloaded; the message names ``source.key`` and how to get the weights.
    """
    local = looks_like_path(pretrained)
    if local and not Path(pretrained).expanduser().is_dir():
        raise FileNotFoundError(f"{source.key}={pretrained!r} looks like a directory but does not exist; give a "
                                f"directory written by {source.saved_by} or a hub id such as {source.example!r}")
    name = str(Path(pretrained).expanduser()) if local else pretrained
    try:
        return load(name, True)
    except (OSError, ValueError) as error:  # ValueError: a directory without a model's config.json
        if local:
            raise FileNotFoundError(f"{source.key}={pretrained!r}: no {source.contents}: {error}") from error
        if not isinstance(error, OSError):
            raise
        reason = hub_unreachable(pretrained)
        if reason is not None:
            raise FileNotFoundError(missing_weights_message(source, pretrained, cache_dir, reason)) from error
    log.info("%s %s are not cached: downloading them into %s", source.what, pretrained, cache_dir or "the HF cache")
    try:
        return load(name, False)
    except OSError as error:  # the connection dropped, a gated repo without a token, no such repo
        raise FileNotFoundError(missing_weights_message(source, pretrained, cache_dir,
                                                        f"the download failed: {error}")) from error
