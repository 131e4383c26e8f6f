"""COCO instances json with compressed-RLE masks (detectron2, mmdet, FiftyOne, CVAT's COCO 1.0 import).

One annotation per class per image, or per 8-connected component with ``per_component``; ``bbox`` and
``area`` come from the mask; uncertain (255) pixels belong to no annotation. RLE is exact.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss.exporters.base import ExportItem, present_classes
from wsss.utils.io import write_text_atomic


def mask_annotations(label: np.ndarray, num_classes: int, per_component: bool = False) -> list[dict]:
    """COCO annotation dicts (without ids) with RLE segmentations for the classes 1..K-1 in ``label``."""
    import cv2
    from pycocotools import mask as mask_utils

    anns = []
    for c in np.unique(label).tolist():
        if not 0 < c < num_classes:
            continue
        binary = (label == c).astype(np.uint8)
        parts = [binary]
        if per_component:
            n, comp = cv2.connectedComponents(binary, connectivity=8)
            parts = [(comp == i).astype(np.uint8) for i in range(1, n)]
        for part in parts:
            rle = mask_utils.encode(np.asfortranarray(part))
            anns.append({"category_id": int(c), "segmentation": {"size": [int(v) for v in rle["size"]],
                                                                  "counts": rle["counts"].decode("ascii")},
                         "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                         "iscrowd": 0})
    return anns


def write_coco_json(items: Iterable[ExportItem], class_names: Sequence[str], out: Path,
                    annotate: Callable[[ExportItem, int], list[dict]], description: str) -> dict[str, Any]:
    """The COCO document around per-image annotations from ``annotate(item, num_classes)``; atomic write.

    Category ids are the class indices (background, index 0, is not a category); each image keeps its
    wsss id as ``wsss_id`` so an import maps it back even when file names collide.
    """
    images, annotations = [], []
    for item in items:
        present_classes(item, len(class_names))  # an unnamed class index fails here, naming the image
        img_id = len(images) + 1
        images.append({"id": img_id, "file_name": item.file_name, "height": item.height, "width": item.width,
                       "wsss_id": item.image_id})
        for ann in annotate(item, len(class_names)):
            annotations.append(ann | {"id": len(annotations) + 1, "image_id": img_id})
    categories = [{"id": c, "name": name, "supercategory": "object"} for c, name in enumerate(class_names) if c > 0]
    doc = {"info": {"description": description}, "licenses": [], "images": images, "annotations": annotations,
           "categories": categories}
    write_text_atomic(out, json.dumps(doc, separators=(",", ":")))  # compact: polygons are long lists
    return {"images": len(images), "annotations": len(annotations)}


@dataclasses.dataclass
class CocoRleParams:
    per_component: bool = False  # one annotation per 8-connected component instead of one per class


class CocoRleExporter:
    """COCO json, masks as compressed RLE (exact)."""

    name = "coco_rle"
    default_out = "coco_rle.json"

    def __init__(self, params: CocoRleParams | None = None) -> None:
        self.params = params or CocoRleParams()

    def write(self, items: Iterable[ExportItem], class_names: Sequence[str], out: Path) -> dict[str, Any]:
        return write_coco_json(items, class_names, out,
                               lambda item, k: mask_annotations(item.label_map, k, self.params.per_component),
                               "wsss pseudo-labels, RLE masks")
