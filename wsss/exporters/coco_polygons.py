"""COCO instances json with polygon segmentations (editable outlines in CVAT, Label Studio, Roboflow ...).

Polygons follow pixel edges exactly (see :mod:`wsss.exporters.polygons`): holes are bridged into their outer
ring, components under ``min_pixels`` are dropped. ``per_component=False`` gives one annotation per class
whose ``segmentation`` lists one polygon per component; ``True`` one annotation per component. ``bbox``
and ``area`` are those of the polygons as pycocotools rasterises them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss.exporters.base import ExportItem
from wsss.exporters.coco_rle import write_coco_json
from wsss.exporters.polygons import MIN_PIXELS, coco_segmentation, component_polygons


def polygon_annotations(label: np.ndarray, num_classes: int, per_component: bool = False,
                        min_pixels: int = MIN_PIXELS, tolerance: float = 0.0) -> list[dict]:
    """COCO annotation dicts (without ids) with polygon segmentations for the classes 1..K-1 in ``label``."""
    from pycocotools import mask as mask_utils

    h, w = label.shape
    anns = []
    for c in np.unique(label).tolist():
        if not 0 < c < num_classes:
            continue
        polygons = component_polygons(label == c, min_pixels, tolerance)
        groups = [[p] for p in polygons] if per_component else ([polygons] if polygons else [])
        for group in groups:
            seg = coco_segmentation(group)
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            anns.append({"category_id": int(c), "segmentation": seg, "area": float(mask_utils.area(rle)),
                         "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
    return anns


@dataclasses.dataclass
class CocoPolygonParams:
    per_component: bool = False  # one annotation per 8-connected component instead of one per class
    min_pixels: int = MIN_PIXELS  # components with fewer pixels are dropped (0 keeps all)
    tolerance: float = 0.0  # > 0: simplify outlines by up to this many pixels (cv2.approxPolyDP)


class CocoPolygonExporter:
    """COCO json, masks as polygons along pixel edges."""

    name = "coco_polygons"
    default_out = "coco_polygons.json"
    description = "wsss pseudo-labels, polygons"

    def __init__(self, params: CocoPolygonParams | None = None) -> None:
        self.params = params or CocoPolygonParams()

    def write(self, items: Iterable[ExportItem], class_names: Sequence[str], out: Path) -> dict[str, Any]:
        p = self.params
        return write_coco_json(items, class_names, out,
                               lambda item, k: polygon_annotations(item.label_map, k, p.per_component, p.min_pixels,
                                                                   p.tolerance),
                               self.description)
