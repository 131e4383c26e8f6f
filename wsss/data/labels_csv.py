"""Image-level labels from a CSV, for the folder reader (``data.folder.labels_file: labels.csv``).

Two forms, told apart by the header::

    image,labels                 image,cat,dog
    0001.jpg,cat;dog             0001.jpg,1,1
    0002,dog                     0002,0,1

The image column holds the id or the file name (the suffix is dropped). Unknown class names fail
with the file, row and the known names.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from wsss.data.base import IMAGE_SUFFIXES


def _image_id(value: str) -> str:
    p = Path(value.strip())
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name


def read_labels_csv(path: str | Path, class_names: list[str]) -> dict[str, list[int]]:
    """``{id: sorted foreground class indices}`` from ``path``; ValueError naming the file and row on bad input."""
    path = Path(path)
    index = {n: i for i, n in enumerate(class_names)}
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV: {e}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ValueError(f"{path}: needs a header row and at least one image row")
    header = [h.strip() for h in rows[0]]
    one_hot = len(header) > 2 or (len(header) == 2 and header[1] in index and header[1] != "labels")
    if one_hot:
        unknown = [h for h in header[1:] if h not in index]
        if unknown:
            raise ValueError(f"{path}: header column {unknown[0]!r} is not a class; known: {class_names[1:]}")
    out: dict[str, list[int]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}, row {n}: {len(row)} columns, the header has {len(header)}")
        if one_hot:
            try:
                flags = [float(v) for v in row[1:]]
            except ValueError:
                raise ValueError(f"{path}, row {n}: class columns must be 0 or 1, got {row[1:]}") from None
            names = [h for h, f in zip(header[1:], flags) if f > 0]
        else:
            names = [t for t in re.split(r"[;|]", row[1]) if t.strip()]
            names = [t.strip() for t in names]
        unknown = [t for t in names if t not in index]
        if unknown:
            raise ValueError(f"{path}, row {n}: unknown class {unknown[0]!r}; known: {class_names[1:]}")
        out[_image_id(row[0])] = sorted({index[t] for t in names if index[t] > 0})
    return out
