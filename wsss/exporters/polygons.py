"""Exact polygons of binary masks along pixel edges, for the COCO-polygon, CVAT and YOLO-seg writers.

Coordinates are pixel *corners* (pixel (x, y) covers [x, x+1) x [y, y+1)), the COCO convention: a polygon
rasterised by pycocotools gives back exactly the mask it came from (tested on random masks), and
normalised YOLO coordinates fill [0, 1]. How: each 8-connected component is upsampled 2x and traced with
``cv2.findContours``; boundary sub-pixel centres map onto pixel corners with ``(u + 1) // 2`` and
collinear points are dropped, which leaves the staircase of pixel edges.

Holes: a polygon format has no holes, so each hole's outline is spliced into the outer ring through a
zero-width bridge (out along the shortest vertex-to-vertex segment, around the hole the other way, back
along the same segment). Area fills (pycocotools, CVAT's SVG, even-odd or non-zero) leave the hole empty;
cv2.fillPoly (Ultralytics) also paints the pixels the bridge line touches, which lie in the object; an
editor draws the bridge as a hair-line slit.

``min_pixels``: components smaller than this are dropped (speckle is noise to an annotator).
``tolerance`` > 0 simplifies each ring with ``cv2.approxPolyDP`` (pixels; fewer vertices to edit, no longer
exact); a ring that would collapse below 3 points keeps its exact form.
"""
from __future__ import annotations

import numpy as np

MIN_PIXELS = 4  # default: components of 1-3 px are dropped


def _rings(sub: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outer ring and hole rings (int corner coordinates, relative to ``sub``) of one 8-connected component."""
    import cv2

    up = np.pad(np.kron(sub, np.ones((2, 2), np.uint8)), 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outer, holes = None, []
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0]):
        ring = _pixel_edges(contour.reshape(-1, 2) - 1)
        if parent < 0:
            if outer is not None:
                raise RuntimeError("polygons: one 8-connected component traced as two outer rings (a bug)")
            outer = ring
        else:
            holes.append(ring)
    if outer is None:
        raise RuntimeError("polygons: empty component (a bug)")
    return outer, holes


def _pixel_edges(centres: np.ndarray) -> np.ndarray:
    """Boundary centres of the 2x-upsampled mask -> corners of the original pixels, collinear points dropped."""
    ring = (centres + 1) // 2
    ring = ring[np.any(ring != np.roll(ring, 1, axis=0), axis=1)]
    if len(ring) < 3:
        return ring
    d_in, d_out = ring - np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0) - ring
    turn = d_in[:, 0] * d_out[:, 1] - d_in[:, 1] * d_out[:, 0]
    return ring[turn != 0]


def _simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    import cv2

    if tolerance <= 0 or len(ring) <= 4:
        return ring
    simple = cv2.approxPolyDP(ring.reshape(-1, 1, 2).astype(np.int32), tolerance, True).reshape(-1, 2)
    return simple if len(simple) >= 3 else ring


def _closest_pair(ring: np.ndarray, hole: np.ndarray) -> tuple[int, int]:
    """Indices (i in ring, j in hole) of the closest pair of vertices (chunked: rings can be long)."""
    best, pair = None, (0, 0)
    step = max(1, 2_000_000 // max(len(ring), 1))
    for start in range(0, len(hole), step):
        d = ((ring[:, None, :] - hole[None, start:start + step, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        if best is None or d[i, j] < best:
            best, pair = d[i, j], (int(i), int(start + j))
    return pair


def _bridge(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """One ring: each hole spliced in along the shortest segment between its vertices and the ring's so far
    (through the object, so a renderer that draws the zero-width bridge's pixels only touches the object)."""
    ring = outer
    for hole in holes:
        i, j = _closest_pair(ring, hole)
        hole = np.roll(hole, -j, axis=0)
        ring = np.concatenate([ring[:i + 1], hole, hole[:1], ring[i:]])
    return ring


def component_polygons(binary: np.ndarray, min_pixels: int = MIN_PIXELS, tolerance: float = 0.0) -> list[np.ndarray]:
    """One polygon (Nx2 float, x/y pixel-corner coordinates) per 8-connected component of ``binary``."""
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(binary, dtype=np.uint8), connectivity=8)
    polygons = []
    for i in range(1, n):
        x0, y0, w, h, area = (int(v) for v in stats[i])
        if area < min_pixels:
            continue
        sub = (comp[y0:y0 + h, x0:x0 + w] == i).astype(np.uint8)
        outer, holes = _rings(sub)
        ring = _bridge(_simplify(outer, tolerance), [_simplify(r, tolerance) for r in holes if len(r) >= 3])
        polygons.append(ring.astype(np.float64) + (x0, y0))
    return polygons


def coco_segmentation(polygons: list[np.ndarray]) -> list[list[float]]:
    """COCO's ``segmentation`` list: one flat [x1, y1, x2, y2, ...] per polygon."""
    return [[float(v) for v in p.ravel()] for p in polygons]
