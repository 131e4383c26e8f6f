"""The pseudo-label manifest: one JSON line per image, appended as images finish.

A crash can leave a half-written last line; reading skips it. ``compact`` rewrites the file with
the newest record per image, in data-set order, atomically.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from wsss.utils.io import json_line, write_text_atomic

# statuses of an image that has its label PNG; `low_confidence` = labelled, but the classifier was unsure
LABELLED = ("ok", "low_confidence")


def is_labelled(record: dict) -> bool:
    """True when the manifest record says the image's pseudo-label was written."""
    return record.get("status") in LABELLED


def read_manifest(path: str | Path) -> dict[str, dict]:
    """Newest record per image id; unparsable lines (a crash mid-write) are skipped."""
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "image" in rec:
            records[rec["image"]] = rec
    return records


class ManifestWriter:
    """Appends one JSON line per record, flushed and fsynced (a hard kill loses at most the line being written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a")
        # a crash mid-write leaves a last line without its newline: end it, or our first record would be
        # glued onto it and lost with it when read back
        if self._fh.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._fh.write("\n")

    def append(self, record: dict) -> None:
        self._fh.write(json_line(record))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def compact(path: str | Path, order: list[str]) -> dict[str, dict]:
    records = read_manifest(path)
    rank = {image_id: i for i, image_id in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(r["image"], len(rank)))
    write_text_atomic(path, "".join(json_line(r) for r in ordered))
    return records


def merge_parts(path: str | Path, parts: list[Path], order: list[str]) -> dict[str, dict]:
    """Fold per-rank manifest parts into ``path`` (newest record per image, data-set order), then drop them."""
    records = read_manifest(path)
    for part in parts:
        records |= read_manifest(part)
    rank = {image_id: i for i, image_id in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(r["image"], len(rank)))
    write_text_atomic(path, "".join(json_line(r) for r in ordered))
    for part in parts:
        Path(part).unlink(missing_ok=True)
    return records
