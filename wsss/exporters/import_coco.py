"""Corrected labels back in: a COCO json (polygons or RLE, as CVAT or other tools export it) -> a pseudo dir.

The output is what stage one writes, so a training config points at it unchanged
(``train.labels_dir: <out_dir>/labels``) and the exporters read it again:

* ``labels/<id>.png``: class-index palette PNGs (atomic writes); pixels no annotation covers are 0
  (background): after a person checked an image, nothing in it is "uncertain" any more;
* ``manifest.jsonl``: one ``status: ok`` record per imported image, merged over the records already there
  (import into a copy of the pseudo dir to replace only the corrected images);
* ``import.json``: the source json, the class names and the counts (export() reads the class names there).

``<id>`` is the image's ``wsss_id`` (written by the wsss exporters, kept by tools that keep extra fields),
else the stem of its ``file_name``: it must be the data set's image id for training to pair it with its image.
Categories are matched to ``class_names`` by name (exactly, else ignoring case); a category that an annotation
uses but no class has is an error naming the json and the name. Overlaps: annotations are painted from the
largest area to the smallest, so where two overlap the smaller one wins (a small object drawn on a large
one stays visible); at equal area the later annotation wins. Annotations without a mask (boxes only) are
counted in ``no_mask`` and ignored.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss.utils.io import json_line, write_json_atomic, write_label_png, write_text_atomic


def _category_classes(coco_json: Path, categories: list[dict], used: set[int], class_names: Sequence[str]) -> dict[int, int]:
    """COCO category id -> class index, by name; only categories that annotations use must be known."""
    exact = {name: i for i, name in enumerate(class_names)}
    folded = {name.casefold(): i for i, name in enumerate(class_names)}
    mapping = {}
    for cat in categories:
        name = str(cat.get("name", ""))
        index = exact.get(name, folded.get(name.casefold()))
        if index is None:
            if cat.get("id") in used:
                raise ValueError(f"{coco_json}: category '{name}' (id {cat.get('id')}) is not one of the classes "
                                 f"{', '.join(class_names)}; rename the label in the annotation tool or pass the "
                                 "matching class names")
            continue
        mapping[int(cat["id"])] = index
    missing = sorted(used - {int(c["id"]) for c in categories if "id" in c})
    if missing:
        raise ValueError(f"{coco_json}: annotations use category id {missing[0]}, which 'categories' does not list")
    return mapping


def _decode(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """HxW bool mask of a COCO segmentation (polygon list, uncompressed or compressed RLE); None if empty."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return None
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
        if [int(v) for v in rle["size"]] != [height, width]:
            raise ValueError(f"RLE size {rle['size']} differs from its image's {height}x{width}")
    else:
        return None
    return mask_utils.decode(rle).astype(bool)


def image_stem(image: dict) -> str:
    """The wsss image id of a COCO image entry: ``wsss_id``, else the stem of ``file_name``."""
    if image.get("wsss_id"):
        return str(image["wsss_id"])
    return Path(str(image.get("file_name", ""))).stem


def paint_label(height: int, width: int, masks: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """A class-index map from (class, HxW bool) pairs in file order: largest area first, so smaller ones win
    where they overlap (at equal area the later one); uncovered pixels are 0 (background)."""
    label = np.zeros((height, width), np.uint8)
    order = sorted(range(len(masks)), key=lambda k: (-int(masks[k][1].sum()), k))
    for k in order:
        cls, mask = masks[k]
        label[mask] = cls
    return label


class PseudoDirWriter:
    """Writes imported labels as a pseudo dir: ``labels/<id>.png`` now, ``manifest.jsonl`` and ``import.json``
    at :meth:`close` (the manifest merged over the one already there)."""

    def __init__(self, out_dir: str | Path, source: str | Path, kind: str) -> None:
        self.out_dir, self.source, self.kind = Path(out_dir), Path(source), kind
        self.records: dict[str, dict] = {}
        self.names: dict[str, str] = {}

    def add(self, stem: str, file_name: str, label: np.ndarray) -> None:
        if not stem or stem in self.names:
            other = f" and '{self.names[stem]}'" if stem in self.names else ""
            raise ValueError(f"{self.source}: image '{file_name}'{other} give the same label name '{stem}'; give each "
                             "image a distinct file name stem (or a wsss_id)")
        self.names[stem] = file_name
        write_label_png(self.out_dir / "labels" / f"{stem}.png", label)
        present = sorted(int(c) for c in np.unique(label) if c > 0)
        self.records[stem] = {"image": stem, "status": "ok", "label": f"labels/{stem}.png", "classes": present,
                              "source": f"{self.kind}:{self.source.name}", "file_name": file_name, "error": None}

    def close(self, class_names: Sequence[str], counts: dict[str, Any]) -> None:
        from wsss.pseudo.manifest import read_manifest  # lazy: wsss.pseudo imports the whole pipeline

        manifest = self.out_dir / "manifest.jsonl"
        merged = read_manifest(manifest) | self.records
        write_text_atomic(manifest, "".join(json_line(r) for r in merged.values()))
        write_json_atomic(self.out_dir / "import.json", {"source": os.path.abspath(self.source), "format": self.kind,
                                                         "class_names": list(class_names), **counts})


def check_class_names(class_names: Sequence[str]) -> None:
    if not 2 <= len(class_names) <= 255:
        raise ValueError(f"need 2..255 class names (index 0 = background), got {len(class_names)}")


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def import_coco(coco_json: str | Path, out_dir: str | Path, class_names: Sequence[str],
                progress: bool = True) -> dict[str, Any]:
    """Write ``<out_dir>/labels/<id>.png`` and ``manifest.jsonl`` from ``coco_json``; returns counts."""
    from tqdm import tqdm

    coco_json = Path(coco_json)
    doc = load_json(coco_json)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ValueError(f"{coco_json}: not a COCO instances file (no 'images' list)")
    check_class_names(class_names)
    annotations = [a for a in doc.get("annotations", []) if isinstance(a, dict)]
    used = {int(a["category_id"]) for a in annotations if "category_id" in a}
    classes = _category_classes(coco_json, doc.get("categories", []), used, class_names)
    by_image: dict[Any, list[dict]] = defaultdict(list)
    for a in annotations:
        by_image[a.get("image_id")].append(a)

    writer = PseudoDirWriter(out_dir, coco_json, "import_coco")
    counts = {"images": 0, "annotations": 0, "no_mask": 0}
    for image in tqdm(doc["images"], desc="import coco", unit="img", leave=False, disable=not progress):
        name = str(image.get("file_name", ""))
        try:
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{coco_json}: image '{name}' lacks a valid height / width") from None
        masks = []
        for ann in by_image.get(image.get("id"), []):
            try:
                mask = _decode(ann.get("segmentation"), height, width)
            except ValueError as e:
                raise ValueError(f"{coco_json}: annotation {ann.get('id')} of image '{name}': {e}") from None
            if mask is None or not mask.any():
                counts["no_mask"] += 1
                continue
            masks.append((classes[int(ann["category_id"])], mask))
        writer.add(image_stem(image), name, paint_label(height, width, masks))
        counts["images"] += 1
        counts["annotations"] += len(masks)
    unused = sorted(str(c.get("name")) for c in doc.get("categories", []) if c.get("id") not in used)
    writer.close(class_names, {**counts, "unused_categories": unused})
    return {"out": str(out_dir), **counts, "unused_categories": unused}
