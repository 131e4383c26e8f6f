"""GrabCut-CAM (paper 001): the CAM digitised into a quaternary GrabCut mask by t0 < t1 < t2.

    0  <= p < t0 : definite background      t1 <= p < t2 : probable foreground
    t0 <= p < t1 : probable background      t2 <= p      : definite foreground

Variants from one threshold t (delta = 0.01): PF-PB (0, t, 1), F-PF (0, delta, t), F-PB (0, t, t + delta).
Scope ``box`` segments each box (pixels outside it are definite background, as in GrabCut's
rectangle mode); scope ``image`` segments the whole image per class (class segmentation).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np

from wsss.masks.base import Refiner, StageImage
from wsss.masks.compose import compose_label_map
from wsss.record import Record, Resources
from wsss.viz import grabcut_seed_picture

VARIANTS = ("PF-PB", "F-PF", "F-PB", "custom")


@dataclasses.dataclass
class GrabCutCamParams:
    variant: Literal["PF-PB", "F-PF", "F-PB", "custom"] = "PF-PB"
    t: float = 0.3
    delta: float = 0.01
    thresholds: list[float] | None = None  # [t0, t1, t2] when variant is 'custom'
    scope: Literal["box", "image"] = "box"
    iterations: int = 1  # paper 001 runs one GrabCut iteration
    margin: float = 0.15  # context around a box, as a fraction of its size, for the colour models
    overlap: Literal["score", "ignore"] = "score"

    def __post_init__(self) -> None:
        t0, t1, t2 = variant_thresholds(self.variant, self.t, self.delta, self.thresholds)
        if not 0.0 <= t0 <= t1 < t2 <= 1.0 + self.delta:
            raise ValueError(f"grabcut_cam thresholds must satisfy 0 <= t0 <= t1 < t2 <= 1, got {(t0, t1, t2)}")


def variant_thresholds(variant: str, t: float, delta: float = 0.01,
                       custom: list[float] | None = None) -> tuple[float, float, float]:
    """(t0, t1, t2) of a named variant of paper 001."""
    if variant == "PF-PB":
        return 0.0, t, 1.0
    if variant == "F-PF":
        return 0.0, delta, t
    if variant == "F-PB":
        return 0.0, t, t + delta
    if variant == "custom":
        if custom is None or len(custom) != 3:
            raise ValueError("variant 'custom' needs thresholds: [t0, t1, t2]")
        return float(custom[0]), float(custom[1]), float(custom[2])
    raise ValueError(f"unknown GrabCut-CAM variant '{variant}'; choose one of {VARIANTS}")


def cam_to_grabcut_mask(cam: np.ndarray, t0: float, t1: float, t2: float) -> np.ndarray:
    """Digitise a CAM in [0, 1] into OpenCV's GC_BGD / GC_PR_BGD / GC_PR_FGD / GC_FGD codes."""
    mask = np.full(cam.shape, cv2.GC_BGD, np.uint8)
    mask[cam >= t0] = cv2.GC_PR_BGD
    mask[cam >= t1] = cv2.GC_PR_FGD
    if t2 < 1.0:  # t2 = 1 means no definite foreground (PF-PB), even at the normalised CAM's peak of exactly 1
        mask[cam >= t2] = cv2.GC_FGD
    return mask


def grabcut(image: np.ndarray, gc_mask: np.ndarray, iterations: int) -> np.ndarray:
    """Run OpenCV GrabCut from a mask; returns the foreground as bool.

    GrabCut needs both colour models: with no background (or foreground) sample it cannot run,
    and the seed is returned as is.
    """
    fg = np.isin(gc_mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if fg.all() or not fg.any():
        return fg
    mask = gc_mask.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))


class GrabCutCam(Refiner):
    pool_safe = True  # OpenCV and numpy only; GrabCut's RNG is OpenCV's per-thread one, seeded per image

    def __init__(self, params: GrabCutCamParams, resources: Resources) -> None:
        self.p = params
        self.t = variant_thresholds(params.variant, params.t, params.delta, params.thresholds)

    def seeds(self, rec: Record) -> list[tuple[int, tuple[int, int, int, int], np.ndarray]]:
        """(class, crop x0 y0 x1 y1, quaternary seed of the crop) for each GrabCut run on ``rec``.

        Scope ``image``: one run per class over the whole image. Scope ``box``: one per box, on the box
        grown by ``margin`` (context for the colour models) with everything outside the box definite
        background.
        """
        h, w = rec.image.shape[:2]
        if self.p.scope == "image":
            return [(c, (0, 0, w, h), cam_to_grabcut_mask(cam, *self.t)) for c, cam in rec.cams.items()]
        runs = []
        for box in rec.boxes:
            x0, y0, x1, y1 = box.with_margin(self.p.margin, h, w)
            cam = rec.cams.get(box.cls)
            if cam is None:  # a box from a detector with no CAM for its class: plain GrabCut rectangle
                cam = np.ones((h, w), np.float32)
            seed = cam_to_grabcut_mask(cam[y0:y1, x0:x1], *self.t)
            inside = np.zeros_like(seed, bool)
            inside[box.y0 - y0: box.y1 - y0, box.x0 - x0: box.x1 - x0] = True
            seed[~inside] = cv2.GC_BGD
            runs.append((box.cls, (x0, y0, x1, y1), seed))
        return runs

    def class_masks(self, rec: Record) -> dict[int, np.ndarray]:
        h, w = rec.image.shape[:2]
        masks: dict[int, np.ndarray] = {}
        for cls, (x0, y0, x1, y1), seed in self.seeds(rec):
            fg = grabcut(rec.image[y0:y1, x0:x1], seed, self.p.iterations)
            full = masks.setdefault(cls, np.zeros((h, w), bool))
            full[y0:y1, x0:x1] |= fg
        return masks

    def stage_images(self, rec: Record) -> list[StageImage]:
        """Each class's GrabCut seed over the image (outside every crop: definite background)."""
        h, w = rec.image.shape[:2]
        full: dict[int, np.ndarray] = {}
        for cls, (x0, y0, x1, y1), seed in self.seeds(rec):
            canvas = full.setdefault(cls, np.full((h, w), cv2.GC_BGD, np.uint8))
            crop = canvas[y0:y1, x0:x1]
            np.copyto(crop, seed, where=seed != cv2.GC_BGD)
        return [(f"GrabCut seed, class {c} (red FG, orange PR_FG, blue PR_BG)", grabcut_seed_picture(rec.image, s))
                for c, s in sorted(full.items())]

    def __call__(self, rec: Record) -> np.ndarray:
        masks = self.class_masks(rec)
        return compose_label_map(rec.image.shape[:2], masks, {c: rec.cams.get(c, np.ones(rec.image.shape[:2])) for c in masks},
                                 self.p.overlap)
