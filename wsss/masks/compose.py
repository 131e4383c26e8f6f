"""Turning per-class masks into one label map with an ignore value."""
from __future__ import annotations

import numpy as np

from wsss.utils.io import IGNORE_INDEX


def compose_label_map(shape: tuple[int, int], masks: dict[int, np.ndarray], confidence: dict[int, np.ndarray],
                      overlap: str = "score") -> np.ndarray:
    """Background where no class claims a pixel; the claiming class where one does.

    Where several classes claim a pixel, ``overlap='score'`` keeps the class with the highest
    confidence there and ``'ignore'`` marks the pixel 255.
    """
    label = np.zeros(shape, np.uint8)
    if not masks:
        return label
    classes = sorted(masks)
    if classes[-1] >= IGNORE_INDEX:
        raise ValueError(f"class index {classes[-1]} does not fit a label map (0..254; 255 = ignore): "
                         "map the classifier's classes to at most 254 data-set classes")
    claims = np.stack([masks[c] for c in classes])
    conf = np.stack([np.where(masks[c], confidence[c], -np.inf) for c in classes])
    winner = np.asarray(classes, np.uint8)[conf.argmax(0)]
    claimed = claims.any(0)
    label[claimed] = winner[claimed]
    if overlap == "ignore":
        label[claims.sum(0) > 1] = IGNORE_INDEX
    return label
