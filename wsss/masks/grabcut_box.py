"""Naked GrabCut (paper 001's baseline): each box initialises GrabCut's rectangle mode, no CAM."""
from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np

from wsss.data.base import Box
from wsss.masks.base import Refiner
from wsss.masks.compose import compose_label_map
from wsss.record import Record, Resources


@dataclasses.dataclass
class GrabCutBoxParams:
    iterations: int = 5
    margin: float = 0.15  # context around a box, as a fraction of its size, for the colour models
    overlap: Literal["score", "ignore"] = "score"


def grabcut_rect(image: np.ndarray, box: Box, iterations: int, margin: float = 0.15) -> np.ndarray:
    """HxW bool foreground of GrabCut initialised with ``box`` (outside = definite background)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box.with_margin(margin, h, w)
    out = np.zeros((h, w), bool)
    bw, bh = box.x1 - box.x0, box.y1 - box.y0
    if bw < 2 or bh < 2:
        return out
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # OpenCV wants BGR
    rect = (box.x0 - x0, box.y0 - y0, bw, bh)
    if (x0, y0, x1, y1) == (box.x0, box.y0, box.x1, box.y1):  # box fills the crop: nothing to learn background from
        out[box.y0:box.y1, box.x0:box.x1] = True
        return out
    mask = np.zeros(crop.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(crop, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    out[y0:y1, x0:x1] = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    return out


class GrabCutBox(Refiner):
    pool_safe = True  # OpenCV and numpy only; GrabCut's RNG is OpenCV's per-thread one, seeded per image

    def __init__(self, params: GrabCutBoxParams, resources: Resources) -> None:
        self.p = params

    def class_masks(self, rec: Record) -> dict[int, np.ndarray]:
        masks: dict[int, np.ndarray] = {}
        for box in rec.boxes:
            fg = grabcut_rect(rec.image, box, self.p.iterations, self.p.margin)
            masks[box.cls] = masks.get(box.cls, np.zeros_like(fg)) | fg
        return masks

    def __call__(self, rec: Record) -> np.ndarray:
        masks = self.class_masks(rec)
        conf = {c: rec.cams.get(c, np.ones(rec.image.shape[:2], np.float32)) for c in masks}
        return compose_label_map(rec.image.shape[:2], masks, conf, self.p.overlap)
