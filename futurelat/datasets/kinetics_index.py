"""The Kinetics index: the annotation CSVs and the clip files they name under a folder.

Annotations: one CSV per split with the header ``label,youtube_id,time_start,time_end,split``
(the DeepMind release of Kinetics-400, Kay et al. 2017, "The Kinetics Human Action Video
Dataset"). Videos: clip files named ``{youtube_id}_{time_start:06d}_{time_end:06d}.<ext>``
(``ext`` in :data:`VIDEO_EXTENSIONS`) anywhere under a root folder. Used by
:class:`futurelat.datasets.kinetics.Kinetics`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

__all__ = ["Annotation", "REQUIRED_COLUMNS", "VIDEO_EXTENSIONS", "find_videos", "pick_path", "read_annotations"]

#: File extensions searched under ``root`` (lower case, with the dot).
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov")
#: Columns every annotation CSV must have (``label`` and ``split`` are optional).
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class Annotation:
    """One CSV row: ``label`` (``""`` when the CSV has none), ``youtube_id``, ``time_start`` and
    ``time_end`` (seconds, ints)."""

    label: str
    youtube_id: str
    time_start: int
    time_end: int

    @property
    def stem(self) -> str:
        """The clip's file name without extension: ``{youtube_id}_{time_start:06d}_{time_end:06d}``."""
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"



def read_annotations(path: str | os.PathLike) -> list[Annotation]:
    """Rows of a Kinetics annotation CSV (header ``label,youtube_id,time_start,time_end,split``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a missing column, a malformed row (names the file and line) or no rows.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Kinetics annotation CSV not found: {path}")
    rows: list[Annotation] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected the header "
                             f"label,youtube_id,time_start,time_end,split; got {reader.fieldnames}")
        for row in reader:
            try:
                rows.append(Annotation(label=(row.get("label") or "").strip(),
                                       youtube_id=row["youtube_id"].strip(),
                                       time_start=int(float(row["time_start"])),
                                       time_end=int(float(row["time_end"]))))
            except (TypeError, ValueError, AttributeError) as err:
                raise ValueError(f"{path}, line {reader.line_num}: malformed row {row} ({err})") from err
    if not rows:
        raise ValueError(f"{path}: the annotation CSV has no rows")
    return rows


def find_videos(root: str | os.PathLike) -> dict[str, list[str]]:
    """Video files under ``root`` by stem: ``{stem: [path relative to root, ...]}`` (sorted paths).

    Walks every folder (hidden folders excepted) and keeps files whose extension is in
    :data:`VIDEO_EXTENSIONS` (case-insensitive).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Kinetics video root is not a folder: {root}")
    found: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                path = name if rel == "." else os.path.join(rel, name)
                found.setdefault(stem, []).append(path.replace(os.sep, "/"))
    for paths in found.values():
        paths.sort()
    return found


def pick_path(paths: list[str], label: str) -> str:
    """The candidate in the label's folder when there is one, else the first."""
    folders = {label, label.replace(" ", "_")}
    for p in paths:
        if p.rpartition("/")[0].rpartition("/")[2] in folders:
            return p
    return paths[0]
