"""Pictures people look at: label overlays, CAM heat maps, boxes, side-by-side panels."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from wsss.data.base import Box
from wsss.utils.io import voc_palette

_PALETTE = np.array(voc_palette(), np.uint8).reshape(256, 3)


def colourise(label: np.ndarray) -> np.ndarray:
    return _PALETTE[label]


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend class colours over the image; background stays as is, ignore shows in its palette colour."""
    out = image.astype(np.float32)
    fg = label > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colourise(label)[fg]
    return out.astype(np.uint8)


def heatmap(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    colour = cv2.applyColorMap((255 * np.clip(cam, 0, 1)).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (0.5 * image + 0.5 * colour).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    out = image.copy()
    for b in boxes:
        colour = tuple(int(v) for v in _PALETTE[b.cls])
        cv2.rectangle(out, (b.x0, b.y0), (b.x1 - 1, b.y1 - 1), colour, max(1, image.shape[0] // 128))
    return out


def panel(tiles: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Tiles side by side with a caption strip above each."""
    h = max(t.shape[0] for t in tiles)
    strip = max(14, h // 10)
    cols = []
    for tile, title in zip(tiles, titles):
        tile = cv2.resize(tile, (int(tile.shape[1] * h / tile.shape[0]), h)) if tile.shape[0] != h else tile
        cap = np.full((strip, tile.shape[1], 3), 255, np.uint8)
        cv2.putText(cap, title, (2, strip - 4), cv2.FONT_HERSHEY_SIMPLEX, strip / 40, (0, 0, 0), 1, cv2.LINE_AA)
        cols.append(np.concatenate([cap, tile], 0))
        cols.append(np.full((h + strip, 2, 3), 255, np.uint8))
    return np.concatenate(cols[:-1], 1)


# GrabCut codes 0..3 (BGD, FGD, PR_BGD, PR_FGD) as colours: black, red, blue, orange
_SEED_COLOURS = np.array([[0, 0, 0], [220, 30, 30], [40, 90, 220], [250, 160, 40]], np.uint8)


def grabcut_seed_picture(image: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """A quaternary GrabCut seed painted over the image."""
    return (0.4 * image + 0.6 * _SEED_COLOURS[seed]).astype(np.uint8)


def as_picture(image: np.ndarray, value: Any) -> np.ndarray | None:
    """An RGB picture of a stage's intermediate over ``image``: an RGB array as is, a mask overlaid, a
    stack of masks (or SAM's automatic-mask records) colourised, big masks first; None if not a picture."""
    h, w = image.shape[:2]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) and "segmentation" in v for v in value):
        value = [np.asarray(v["segmentation"]) for v in value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) and v.shape == (h, w) for v in value):
        value = np.stack(value)
    if not isinstance(value, np.ndarray):
        return None
    if value.shape == (h, w, 3) and value.dtype == np.uint8:
        return value
    if value.shape == (h, w):
        return overlay(image, (value > 0).astype(np.uint8) * 15)
    if value.ndim == 3 and value.shape[1:] == (h, w) and value.shape[0] > 0:
        label = np.zeros((h, w), np.uint8)
        for k, i in enumerate(np.argsort([-m.sum() for m in value])):
            label[value[i] > 0] = 1 + k % 20
        return (0.4 * image + 0.6 * colourise(label)).astype(np.uint8)
    return None
