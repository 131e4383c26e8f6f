"""Run the stage-one models on a downscaled copy of a large image and paint the result back at native size.

CAM, GrabCut, dense CRF and SAM cost grows with the pixel count (a 12000x12000 photo took 8.8 GB and
minutes), while the masks they produce carry little detail beyond ~1000 px. :func:`process_at_working_size`
shrinks ``rec.sample`` so its longer side is ``max_side`` (config ``pseudo.max_side``), runs the stages, then
restores the native sample and brings the outputs back to native pixels:

* ``label_map``: nearest-neighbour (class indices must not blend);
* ``cams``: bilinear, float32 in [0, 1], so ``rec.cams`` keep matching ``rec.image`` (overlays rely on it),
  or dropped with ``keep_cams=False`` to save ``4 x H x W`` bytes per class;
* ``boxes``: scaled to native pixels, rounded outwards and clipped to the image; a box the data set gave
  (``sample.boxes``) that comes out unchanged is returned exactly as given;
* ``cache``: what the stages cached is for the working-size image (a SAM embedding, for instance), so it is
  discarded and the record's previous cache restored;
* ``extras["working_scale"]``: the factor used (working / native), so the manifest says which images were shrunk.

An image whose longer side is at most ``max_side`` (or ``max_side <= 0``) is processed untouched.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import cv2
import numpy as np

from wsss.data.base import Box, Sample
from wsss.record import Record


def working_scale(height: int, width: int, max_side: int) -> float:
    """Factor (<= 1) that brings the longer side down to ``max_side``; 1.0 when it already fits or max_side <= 0."""
    longer = max(height, width)
    if max_side <= 0 or longer <= max_side:
        return 1.0
    return max_side / longer


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, round(height * scale)), max(1, round(width * scale))


def scale_box(box: Box, scale: float, height: int, width: int) -> Box:
    """``box`` times ``scale``, rounded outwards (an object is never cut) and clipped to ``width`` x ``height``."""
    x0 = min(max(math.floor(box.x0 * scale), 0), width - 1)
    y0 = min(max(math.floor(box.y0 * scale), 0), height - 1)
    x1 = min(max(math.ceil(box.x1 * scale), x0 + 1), width)  # x1/y1 exclusive: at least one pixel wide
    y1 = min(max(math.ceil(box.y1 * scale), y0 + 1), height)
    return dataclasses.replace(box, x0=x0, y0=y0, x1=x1, y1=y1)


def shrink_sample(sample: Sample, scale: float) -> Sample:
    """A copy of ``sample`` at ``scale``: image by area averaging, ground-truth mask nearest, boxes scaled."""
    h, w = sample.image.shape[:2]
    nh, nw = _scaled_size(h, w, scale)
    image = cv2.resize(sample.image, (nw, nh), interpolation=cv2.INTER_AREA)
    mask = None if sample.mask is None else cv2.resize(sample.mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
    boxes = None if sample.boxes is None else [scale_box(b, scale, nh, nw) for b in sample.boxes]
    return dataclasses.replace(sample, image=np.ascontiguousarray(image), mask=mask, boxes=boxes)


def process_at_working_size(process: Callable[[Record], Record], rec: Record, max_side: int,
                            keep_cams: bool = True) -> Record:
    """``process(rec)`` on a copy of the image whose longer side is ``max_side``; outputs back at native size.

    Returns the record ``process`` returned, with the native sample in place (see the module docstring
    for what happens to each field). Small images go straight through: the output is identical.
    """
    native = rec.sample
    h, w = native.image.shape[:2]
    scale = working_scale(h, w, max_side)
    if scale >= 1.0:
        return process(rec)
    native_cache = rec.cache
    small = shrink_sample(native, scale)
    # given boxes passed through by the "given" source map back exactly, not via a lossy round trip
    given = {dataclasses.astuple(s): b for s, b in zip(small.boxes or [], native.boxes or [])}
    rec.sample, rec.cache = small, {}
    try:
        out = process(rec)
    finally:  # the native image is back even when a stage fails (the error is recorded against it)
        rec.sample, rec.cache = native, native_cache
    out.sample, out.cache = native, native_cache
    if out.label_map is not None:
        out.label_map = cv2.resize(out.label_map, (w, h), interpolation=cv2.INTER_NEAREST)
    if keep_cams:
        out.cams = {c: np.clip(cv2.resize(np.asarray(cam, np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
                    for c, cam in out.cams.items()}
    else:
        out.cams = {}
    out.boxes = [given.get(dataclasses.astuple(b)) or scale_box(b, 1.0 / scale, h, w) for b in out.boxes]
    out.extras["working_scale"] = round(scale, 6)
    return out
