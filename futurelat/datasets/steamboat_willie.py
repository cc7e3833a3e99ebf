"""*Steamboat Willie* (Disney, 1928; public domain since 2024) as clips: the ``video_file`` dataset
with the film's settings (``configs/dataset/steamboat_willie.yaml``: grayscale, 64 px, 12 fps,
shot cuts on).

Nothing is downloaded at run time: get the film from the Internet Archive item
``steamboat-willie-mickey`` (:data:`ARCHIVE_URL`, e.g. its MPEG4 file) and point
``dataset.path`` at your copy. The first run decodes and caches its frames
(:mod:`futurelat.datasets.frame_cache`); later runs read the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from futurelat.datasets.video_file import VideoFileDataset, build_video_file

__all__ = ["ARCHIVE_URL", "build_steamboat_willie"]

#: Where to get the film (public domain).
ARCHIVE_URL = "https://archive.org/details/steamboat-willie-mickey"


def build_steamboat_willie(cfg: Mapping[str, Any], split: str) -> VideoFileDataset:
    """:func:`futurelat.datasets.video_file.build_video_file` whose error for an unset or missing
    ``dataset.path`` says where to get the film and what to set.

    Raises:
        ValueError / FileNotFoundError: as ``build_video_file``.
    """
    hint = (f"Steamboat Willie is not downloaded by futurelat: get the film (public domain) from {ARCHIVE_URL} "
            "and set dataset.path=/path/to/film.mp4")
    return build_video_file(cfg, split, missing_hint=hint)
