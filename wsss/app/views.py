"""Stage images of one generation: CAM, boxes, the refiner's own intermediates, final overlay.

A refiner may expose intermediates in two ways, both optional:
- a method ``stage_images(rec) -> list[(title, image)]`` (RGB uint8 images or HxW masks);
- HxW masks (or lists of them, e.g. automatic masks) left in ``rec.cache`` under a readable key.
GrabCut-CAM's seed is rebuilt here from its thresholds, since GrabCut-CAM keeps no intermediates.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from wsss.masks.grabcut_cam import GrabCutCam, cam_to_grabcut_mask
from wsss.record import Record
from wsss.viz import colourise, draw_boxes, heatmap, overlay

# GrabCut codes 0..3 (BGD, FGD, PR_BGD, PR_FGD) as colours: black, red, blue, orange
_SEED_COLOURS = np.array([[0, 0, 0], [220, 30, 30], [40, 90, 220], [250, 160, 40]], np.uint8)


def grabcut_seed(refiner: GrabCutCam, rec: Record, cls: int) -> np.ndarray:
    """The quaternary mask GrabCut-CAM starts from for class ``cls`` (box scope: outside boxes = background)."""
    cam = rec.cams[cls]
    if refiner.p.scope == "image":
        return cam_to_grabcut_mask(cam, *refiner.t)
    seed = np.full(cam.shape, cv2.GC_BGD, np.uint8)
    for b in rec.boxes:
        if b.cls == cls:
            seed[b.y0 : b.y1, b.x0 : b.x1] = cam_to_grabcut_mask(cam[b.y0 : b.y1, b.x0 : b.x1], *refiner.t)
    return seed


def seed_image(image: np.ndarray, seed: np.ndarray) -> np.ndarray:
    return (0.4 * image + 0.6 * _SEED_COLOURS[seed]).astype(np.uint8)


def _as_picture(image: np.ndarray, value: Any) -> np.ndarray | None:
    """An RGB picture of a cached value: masks are overlaid, mask stacks colourised; None if not a picture."""
    h, w = image.shape[:2]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) and "segmentation" in v for v in value):
        value = [np.asarray(v["segmentation"]) for v in value]  # SAM automatic-mask records
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, np.ndarray) and v.shape == (h, w) for v in value)
    ):
        value = np.stack(value)
    if not isinstance(value, np.ndarray):
        return None
    if value.shape == (h, w, 3) and value.dtype == np.uint8:
        return value
    if value.shape == (h, w):
        return overlay(image, (value > 0).astype(np.uint8) * 15)
    if value.ndim == 3 and value.shape[1:] == (h, w) and value.shape[0] > 0:  # a stack of masks
        label = np.zeros((h, w), np.uint8)
        order = np.argsort([-m.sum() for m in value])  # big first so small masks stay visible
        for k, i in enumerate(order):
            label[value[i] > 0] = 1 + k % 20
        return (0.4 * image + 0.6 * colourise(label)).astype(np.uint8)
    return None


def refiner_views(refiner: Any, rec: Record, cls: int) -> list[tuple[np.ndarray, str]]:
    """The refiner's intermediate pictures, by whichever route it offers."""
    if hasattr(refiner, "stage_images"):
        out = []
        for title, img in refiner.stage_images(rec):
            pic = _as_picture(rec.image, img)
            if pic is not None:
                out.append((pic, str(title)))
        return out
    if isinstance(refiner, GrabCutCam) and cls in rec.cams:
        return [
            (seed_image(rec.image, grabcut_seed(refiner, rec, cls)), "GrabCut seed (red FG, orange PR_FG, blue PR_BG)")
        ]
    out = []
    for key, value in rec.cache.items():
        pic = _as_picture(rec.image, value)
        if pic is not None:
            out.append((pic, str(key).replace("_", " ")))
    return out


def stage_views(refiner: Any, rec: Record, cls: int, class_name: str) -> list[tuple[np.ndarray, str]]:
    """CAM, boxes, the refiner's intermediates, final mask: (RGB image, caption) pairs for a gallery."""
    image = rec.image
    cam = rec.cams.get(cls, np.zeros(image.shape[:2], np.float32))
    boxes = [b for b in rec.boxes if b.cls == cls]
    views = [(heatmap(image, cam), f"CAM ({class_name})"), (draw_boxes(image, boxes), f"boxes ({len(boxes)})")]
    views += refiner_views(refiner, rec, cls)
    label = rec.label_map if rec.label_map is not None else np.zeros(image.shape[:2], np.uint8)
    views.append((overlay(image, np.where(label == cls, cls, 0).astype(np.uint8)), "final mask"))
    return views
