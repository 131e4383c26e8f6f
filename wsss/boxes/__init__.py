"""Boxes stage: where each present class is, chosen by ``boxes.name``.

Interface: ``source(record) -> list[Box]`` in image pixels.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np

from wsss.boxes.base import BoxSource
from wsss.boxes.grounding_dino import GroundingDinoBoxes, GroundingDinoParams
from wsss.data.base import Box
from wsss.record import Record, Resources
from wsss.registry import Registry

BOX_SOURCES = Registry("boxes")


@dataclasses.dataclass
class CamComponentParams:
    threshold: float = 0.5  # CAM >= threshold is inside an object
    # union: one box around every pixel with CAM >= threshold, per class (paper 000's authors,
    # Borgli/cam-sam `find_bounding_box`); components: one box per 8-connected component (wsss's variant:
    # separates several instances, but cuts off ears and legs whose CAM dips below the threshold)
    mode: Literal["union", "components"] = "union"
    min_area: float = 0.002  # drop components smaller than this fraction of the image
    max_boxes_per_class: int = 10

    def __post_init__(self) -> None:
        if self.mode not in ("union", "components"):
            raise ValueError(f"boxes.cam_components.mode is '{self.mode}'; choose 'union' or 'components'")


def cam_union_box(cam: np.ndarray, cls: int, threshold: float) -> list[Box]:
    """One box around every pixel with ``cam >= threshold`` (none when no pixel passes)."""
    ys, xs = np.nonzero(cam >= threshold)
    if len(xs) == 0:
        return []
    return [Box(cls, int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, float(cam.max()))]


def cam_component_boxes(cam: np.ndarray, cls: int, threshold: float, min_area: float, max_boxes: int) -> list[Box]:
    """One box per 8-connected component of ``cam >= threshold``, largest CAM peak first."""
    binary = (cam >= threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_pixels = min_area * cam.size
    boxes = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < min_pixels:
            continue
        boxes.append(Box(cls, int(x), int(y), int(x + w), int(y + h), float(cam[labels == i].max())))
    return sorted(boxes, key=lambda b: -b.score)[:max_boxes]


class CamComponentBoxes(BoxSource):
    def __init__(self, params: CamComponentParams, resources: Resources) -> None:
        self.p = params

    def __call__(self, rec: Record) -> list[Box]:
        boxes = []
        for cls, cam in rec.cams.items():
            if self.p.mode == "union":
                boxes += cam_union_box(cam, cls, self.p.threshold)
            else:
                boxes += cam_component_boxes(cam, cls, self.p.threshold, self.p.min_area, self.p.max_boxes_per_class)
        return boxes


class NoBoxes(BoxSource):
    """For refiners that work on the whole image (class segmentation)."""

    def __init__(self, params: None, resources: Resources) -> None:
        pass

    def __call__(self, rec: Record) -> list[Box]:
        return []


class GivenBoxes(BoxSource):
    """The data set's own boxes (Kvasir bboxes, VOC XML, COCO), restricted to the record's classes."""

    def __init__(self, params: None, resources: Resources) -> None:
        pass

    def __call__(self, rec: Record) -> list[Box]:
        if rec.sample.boxes is None:
            raise ValueError(f"image '{rec.sample.id}' has no given boxes; this data set provides none "
                             "(use boxes.name: cam_components)")
        wanted = set(rec.classes)
        return [b for b in rec.sample.boxes if b.cls in wanted]


BOX_SOURCES.register("cam_components", params=CamComponentParams)(CamComponentBoxes)
BOX_SOURCES.register("given")(GivenBoxes)
BOX_SOURCES.register("none")(NoBoxes)

BOX_SOURCES.register("grounding_dino", params=GroundingDinoParams)(GroundingDinoBoxes)
