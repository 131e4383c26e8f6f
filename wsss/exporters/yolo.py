"""YOLO segmentation (Ultralytics ``task=segment``): ``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``.

Each label file ``labels/<split>/<id>.txt`` has one line per 8-connected component of each foreground
class, ``cls x1 y1 x2 y2 ...``: ``cls`` counts the foreground classes from 0 (background is dropped, so
class index c is ``c - 1``), coordinates are pixel corners divided by width / height, in [0, 1]. The
polygons are exact pixel outlines with holes bridged in (see :mod:`wsss.exporters.polygons`); YOLO has one
polygon per instance, so ``per_component`` does not apply. An image without foreground gets an empty file
(a background image for Ultralytics).

Images: Ultralytics finds a label by swapping ``images`` for ``labels`` in the image path, so each image
must sit in ``images/<split>/<id><ext>``. ``images="symlink"`` (default) links it to the original file,
``"copy"`` copies it (a folder you can move to another machine), ``"none"`` writes labels only. Without a
known image file (no data set in the config) nothing is linked and ``images_missing`` counts them.

Split: an image is in val when a hash of (seed, id) falls below ``val_fraction``: deterministic, and an
image keeps its split when the set grows, so the split is ``val_fraction`` on average, not exactly (a
tiny set may get no val image; ``val`` in the counts says so).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from wsss.exporters.base import ExportItem, present_classes
from wsss.exporters.polygons import MIN_PIXELS, component_polygons
from wsss.utils.io import atomic_path, write_text_atomic


@dataclasses.dataclass
class YoloParams:
    val_fraction: float = 0.2  # share of images in val (by hash, see the module doc)
    seed: int = 0  # changes which images are val
    images: Literal["symlink", "copy", "none"] = "symlink"
    min_pixels: int = MIN_PIXELS  # components with fewer pixels are dropped
    tolerance: float = 0.0  # > 0: simplify outlines by up to this many pixels


def split_of(image_id: str, seed: int, val_fraction: float) -> str:
    """"train" or "val" for ``image_id``, from a hash of (seed, id) alone."""
    digest = hashlib.blake2b(f"{seed}/{image_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < val_fraction else "train"


def yolo_lines(item: ExportItem, num_classes: int, min_pixels: int = MIN_PIXELS, tolerance: float = 0.0) -> list[str]:
    """The label-file lines of one image."""
    lines = []
    for c in present_classes(item, num_classes):
        for poly in component_polygons(item.label_map == c, min_pixels, tolerance):
            xy = (poly / (item.width, item.height)).ravel()
            lines.append(" ".join([str(c - 1), *(f"{v:.6f}" for v in xy)]))
    return lines


class YoloExporter:
    """An Ultralytics YOLO-seg data set folder."""

    name = "yolo"
    default_out = "yolo"

    def __init__(self, params: YoloParams | None = None) -> None:
        self.params = params or YoloParams()

    def _place_image(self, item: ExportItem, split: str, out: Path) -> bool:
        src = item.image_file
        if self.params.images == "none" or src is None or not src.is_file():
            return False
        dest = out / "images" / split / f"{item.image_id}{src.suffix.lower()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.params.images == "symlink":
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            os.symlink(src.resolve(), dest)
        else:
            with atomic_path(dest) as tmp:
                shutil.copyfile(src, tmp)
        return True

    def write(self, items: Iterable[ExportItem], class_names: Sequence[str], out: Path) -> dict[str, Any]:
        out = Path(out)
        p = self.params
        counts = {"images": 0, "annotations": 0, "train": 0, "val": 0, "images_missing": 0}
        for split in ("train", "val"):
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for item in items:
            split = split_of(item.image_id, p.seed, p.val_fraction)
            lines = yolo_lines(item, len(class_names), p.min_pixels, p.tolerance)
            write_text_atomic(out / "labels" / split / f"{item.image_id}.txt", "".join(f"{line}\n" for line in lines))
            # an earlier export with another seed or fraction may have put this image in the other split
            other = "val" if split == "train" else "train"
            (out / "labels" / other / f"{item.image_id}.txt").unlink(missing_ok=True)
            for stale in (out / "images" / other).glob(f"{glob.escape(item.image_id)}.*"):
                stale.unlink()
            if not self._place_image(item, split, out):
                counts["images_missing"] += 1
            counts["images"] += 1
            counts["annotations"] += len(lines)
            counts[split] += 1
        data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
                "names": {i: name for i, name in enumerate(class_names[1:])}}
        write_text_atomic(out / "data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        return counts
