"""A tiled mode for very large images (aerial photos, slides): localise once, refine tile by tile at native size.

:func:`process_at_working_size` shrinks a large image for every stage, which loses the fine structure a
refiner could recover at native resolution. :func:`process_tiled` keeps the image-level stages (labels,
CAM) on the shrunk copy, where they only need context, and runs the box and mask stages on overlapping
native-resolution tiles:

* the image is read once; each tile is a view into it, with the CAMs cropped to the tile;
* a tile's boxes are shifted to image pixels, and boxes of one class that meet across a seam are merged
  into one (an object cut by tile borders is one object);
* each tile paints only its own core: the tile minus half the overlap on every side that has a neighbour,
  so every pixel comes from the tile it lies most inside, and refiners see ``overlap / 2`` px of context
  beyond every seam.

With ``tile`` at least the image's size, this is the plain pipeline (the same label map).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from wsss.data.base import Box
from wsss.pseudo.working_size import process_at_working_size
from wsss.record import Record

Process = Callable[..., Record]  # PseudoLabeler.process(rec, steps=...)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least ``overlap`` px overlap."""
    if tile >= length:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """The [a, b) span each tile paints: boundaries halfway through each overlap."""
    cuts = [0] + [(starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [length]
    return [(cuts[i], cuts[i + 1]) for i in range(len(starts))]


def merge_boxes(boxes: Sequence[Box], gap: int = 1) -> list[Box]:
    """Boxes of one class that overlap or touch (within ``gap`` px) merged into their union, score = max."""
    merged = [dataclasses.replace(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if a.cls == b.cls and a.x0 <= b.x1 + gap and b.x0 <= a.x1 + gap and a.y0 <= b.y1 + gap and b.y0 <= a.y1 + gap:
                    merged[i] = Box(a.cls, min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1),
                                    max(a.score, b.score))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def _tile_record(rec: Record, x0: int, y0: int, x1: int, y1: int) -> Record:
    sample = dataclasses.replace(
        rec.sample, image=rec.image[y0:y1, x0:x1],
        mask=None if rec.sample.mask is None else rec.sample.mask[y0:y1, x0:x1],
        boxes=None if rec.sample.boxes is None else [
            Box(b.cls, max(b.x0, x0) - x0, max(b.y0, y0) - y0, min(b.x1, x1) - x0, min(b.y1, y1) - y0, b.score)
            for b in rec.sample.boxes if b.x0 < x1 and b.x1 > x0 and b.y0 < y1 and b.y1 > y0])
    return Record(sample, classes=list(rec.classes), scores=dict(rec.scores),
                  cams={c: m[y0:y1, x0:x1] for c, m in rec.cams.items()})


def process_tiled(process: Process, rec: Record, tile: int, overlap: int, max_side: int) -> Record:
    """Labels and CAM at working size (``max_side``), then boxes and masks on native ``tile`` px tiles."""
    h, w = rec.image.shape[:2]
    if tile <= 0 or (tile >= h and tile >= w):
        return process_at_working_size(process, rec, max_side)
    if not 0 <= overlap < tile:
        raise ValueError(f"pseudo.tile_overlap must be in [0, pseudo.tile) = [0, {tile}), got {overlap}")
    rec = process_at_working_size(lambda r: process(r, steps=("labels", "cam")), rec, max_side)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    label = np.zeros((h, w), np.uint8)
    boxes: list[Box] = []
    for (y0, (cy0, cy1)) in zip(ys, _cores(ys, tile, h)):
        for (x0, (cx0, cx1)) in zip(xs, _cores(xs, tile, w)):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            part = process(_tile_record(rec, x0, y0, x1, y1), steps=("boxes", "masks"))
            label[cy0:cy1, cx0:cx1] = part.label_map[cy0 - y0: cy1 - y0, cx0 - x0: cx1 - x0]
            boxes += [Box(b.cls, b.x0 + x0, b.y0 + y0, b.x1 + x0, b.y1 + y0, b.score) for b in part.boxes]
            for k, v in part.timings.items():
                rec.timings[k] = rec.timings.get(k, 0.0) + v
            rec.extras.update({k: v for k, v in part.extras.items() if k not in rec.extras})
    rec.label_map, rec.boxes = label, merge_boxes(boxes)
    rec.extras["tiles"] = len(ys) * len(xs)
    return rec
