"""Choosing among SAM masks: paper 000's pruning and IoU match, paper 003's grouping inside a box.

Pure functions on boolean mask stacks, so the rules are tested on constructed masks.

Paper 000's rules follow the authors' code (github.com/Borgli/cam-sam, ``utils.prune_masks_outside_area``,
``utils.prune_masks_if_blackish`` and the demo's ``system.run_mask_generation``); wsss's older pruning rules
(frames touching image edges, mean intensity) stay as options, off by default.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from wsss.data.base import Box

SmallBoxMask = Literal["replace", "keep"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a`` (N, H, W) with every mask in ``b`` (M, H, W), as one matrix product."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    fa = torch.from_numpy(np.ascontiguousarray(a).reshape(len(a), -1)).float()
    fb = torch.from_numpy(np.ascontiguousarray(b).reshape(len(b), -1)).float()
    inter = fa @ fb.T
    union = fa.sum(1, keepdim=True) + fb.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


# -- paper 000: pruning the automatic masks ---------------------------------------------------------------
def _mean_under(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per mask, the mean of the (H, W) ``values`` over its pixels (0 for an empty mask), as one product."""
    flat = masks.reshape(len(masks), -1).astype(np.float32)
    return flat @ values.reshape(-1).astype(np.float32) / np.maximum(flat.sum(1), 1)


def dark_fraction(masks: np.ndarray, image: np.ndarray, dark_level: float = 30) -> np.ndarray:
    """Per mask, the fraction of its pixels that are dark: every channel below ``dark_level`` (cam-sam's "blackish")."""
    dark = image < dark_level
    if dark.ndim == 3:
        dark = dark.all(2)
    return _mean_under(masks, dark)


def edges_touched(masks: np.ndarray) -> np.ndarray:
    """Per mask, how many of the 4 image edges it touches."""
    return (masks[:, 0, :].any(1).astype(int) + masks[:, -1, :].any(1) + masks[:, :, 0].any(1)
            + masks[:, :, -1].any(1))


def mean_intensity(masks: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Per mask, the mean grey level (mean over channels) of the image under it."""
    gray = image.astype(np.float32)
    return _mean_under(masks, gray.mean(2) if gray.ndim == 3 else gray)


def prune_auto_masks(masks: np.ndarray, image: np.ndarray, max_area: float = 0.7, border_sides: int = 0,
                     black_level: float = 0.0, *, min_area: float = 0.01, dark_level: float = 30,
                     max_dark_fraction: float = 0.5) -> np.ndarray:
    """Indices of the automatic masks to keep (paper 000 drops the viewport, its borders and specks).

    The authors' rules (on by default):
    - area: kept when ``min_area`` < |mask| / |image| < ``max_area`` (strict, as cam-sam's 1 % / 70 %);
      ``min_area`` 0 or ``max_area`` ≥ 1 switches that side off;
    - dark: dropped when at least ``max_dark_fraction`` of its pixels are dark, a dark pixel having every
      channel below ``dark_level`` (cam-sam: 30 and 0.5; ``dark_level`` 0 switches it off).
    wsss's older rules (off by default, 0 = off): masks touching at least ``border_sides`` image edges
    (frames) and masks whose mean image intensity is below ``black_level``.
    ``max_area``, ``border_sides`` and ``black_level`` keep their old positions for existing callers.
    """
    if len(masks) == 0:
        return np.zeros(0, int)
    area = masks.reshape(len(masks), -1).mean(1)
    keep = np.ones(len(masks), bool)
    if min_area > 0:
        keep &= area > min_area
    if max_area < 1:
        keep &= area < max_area
    if dark_level > 0:
        keep &= dark_fraction(masks, image, dark_level) < max_dark_fraction
    if border_sides:
        keep &= edges_touched(masks) < border_sides
    if black_level > 0:
        keep &= mean_intensity(masks, image) >= black_level
    return np.flatnonzero(keep)


# -- paper 000: the box mask against the automatic masks -----------------------------------------------------
def match_box_mask(box_mask: np.ndarray, auto: np.ndarray, min_iou: float = 0.1, min_box_mask_px: int = 100,
                   small_box_mask: SmallBoxMask = "replace") -> tuple[np.ndarray, float, int]:
    """Paper 000: the automatic mask with the best IoU against the box-prompt mask if it beats ``min_iou``.

    A box mask under ``min_box_mask_px`` pixels is "small" (SAM has all but failed on the box):
    ``small_box_mask="replace"`` (cam-sam's demo: ``best_iou > 0.1 or box_mask.sum() < 100``) takes the
    best-IoU automatic mask whenever any overlaps it at all (IoU > 0); ``"keep"`` never replaces it.
    ``min_box_mask_px`` 0 switches the rule off. Returns (mask, best IoU, index into ``auto`` or -1 when the
    box mask is kept).
    """
    if small_box_mask not in ("replace", "keep"):
        raise ValueError(f"small_box_mask is '{small_box_mask}'; choose 'replace' or 'keep'")
    if len(auto) == 0:
        return box_mask, 0.0, -1
    ious = iou_matrix(box_mask[None], auto)[0]
    best = int(ious.argmax())
    small = int(box_mask.sum()) < min_box_mask_px
    if small and small_box_mask == "keep":
        return box_mask, float(ious[best]), -1
    if ious[best] > (0.0 if small else min_iou):
        return auto[best], float(ious[best]), best
    return box_mask, float(ious[best]), -1


# -- paper 003: grouping inside the box -----------------------------------------------------------------------
def box_region(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool region of ``box`` (x1, y1 exclusive), clipped to the image."""
    region = np.zeros(shape, bool)
    region[max(box.y0, 0): box.y1, max(box.x0, 0): box.x1] = True
    return region


def mask_bboxes(masks: np.ndarray) -> np.ndarray:
    """(N, 4) bounding boxes y0, x0, y1, x1 (exclusive) of (N, H, W) masks; all 0 for an empty mask."""
    rows, cols = masks.any(2), masks.any(1)
    h, w = masks.shape[-2:]
    boxes = np.stack([rows.argmax(1), cols.argmax(1), h - rows[:, ::-1].argmax(1), w - cols[:, ::-1].argmax(1)], 1)
    boxes[~rows.any(1)] = 0
    return boxes


def box_shaped(masks: np.ndarray, box: Box, box_rect: float = 0.9, box_iou: float = 0.9) -> np.ndarray:
    """Per mask: does it merely fill the prompt box?

    True when its rectangularity |mask| / |bbox(mask)| ≥ ``box_rect`` and its bounding box matches the
    prompt box, IoU(bbox(mask), box) ≥ ``box_iou``. Such a mask is what SAM returns when it segments the
    box rather than the object in it.
    """
    h, w = masks.shape[-2:]
    b = mask_bboxes(masks).astype(np.float64)
    bbox_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    rect = masks.reshape(len(masks), -1).sum(1) / np.maximum(bbox_area, 1)
    p = np.array([max(box.y0, 0), max(box.x0, 0), min(box.y1, h), min(box.x1, w)], np.float64)
    inter = (np.clip(np.minimum(b[:, 2], p[2]) - np.maximum(b[:, 0], p[0]), 0, None)
             * np.clip(np.minimum(b[:, 3], p[3]) - np.maximum(b[:, 1], p[1]), 0, None))
    union = bbox_area + (p[2] - p[0]) * (p[3] - p[1]) - inter
    return (bbox_area > 0) & (rect >= box_rect) & (inter / np.maximum(union, 1) >= box_iou)


def candidate_quality(pred_iou: np.ndarray, stability: np.ndarray | None = None, iou_weight: float = 1.0,
                      stability_weight: float = 1.0) -> np.ndarray:
    """SAM's own confidence in each candidate: clip(pred_iou)^iou_weight · clip(stability)^stability_weight.

    Both are clipped to [0, 1] (random or poorly fitted decoders predict negative IoUs; NaN counts as 0);
    a weight of 0 ignores that term; ``stability`` None counts as 1.
    """
    def unit(x: np.ndarray) -> np.ndarray:
        return np.clip(np.nan_to_num(np.asarray(x, np.float64), nan=0.0), 0, 1)

    q = unit(pred_iou) ** iou_weight
    if stability is not None:
        q = q * unit(stability) ** stability_weight
    return q


def candidate_scores(candidates: np.ndarray, box: Box, quality: np.ndarray | None = None, box_rect: float = 0.9,
                     box_iou: float = 0.9, box_penalty: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    """The ranking of ``group_in_box``: (ratio, score) per candidate.

    ratio = |m ∩ B| / |B| (a whole object fills more of its box than any of its parts, paper 003);
    score = ratio · quality · (1 − box_penalty · [m ∩ B is box-shaped]) (``box_shaped``), so a candidate
    that merely fills its box counts as filling (1 − box_penalty) of it. ``quality`` None counts as 1.
    """
    region = box_region(box, candidates.shape[-2:])
    clipped = candidates & region
    ratio = clipped.reshape(len(candidates), -1).sum(1) / max(int(region.sum()), 1)
    q = np.ones(len(candidates)) if quality is None else np.asarray(quality, np.float64)
    penalty = np.zeros(len(candidates))
    if box_penalty > 0 and len(candidates):
        penalty = box_penalty * box_shaped(clipped, box, box_rect, box_iou)
    return ratio, ratio * q * (1 - penalty)


def group_in_box(candidates: np.ndarray, box: Box, inside_frac: float = 0.8, add_ratio: float = 0.2,
                 min_ratio: float = 0.05, *, quality: np.ndarray | None = None, box_rect: float = 0.9,
                 box_iou: float = 0.9, box_penalty: float = 0.75) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper 003's hierarchical grouping (whole objects before their parts), ranked with SAM's confidence.

    Candidates mostly inside the box (``inside_frac`` of their pixels) that fill at least ``min_ratio``
    of it are ranked by

        score = ratio · quality · (1 − box_penalty · box_shaped),   ratio = |m ∩ B| / |B|

    (``candidate_scores``; ties by ratio). ``quality`` is SAM's predicted IoU × stability
    (``candidate_quality``); ``box_shaped`` is 1 for a candidate whose rectangularity is ≥ ``box_rect`` and
    whose bounding box has IoU ≥ ``box_iou`` with the prompt box (it fills the box, not the object).
    ``quality`` None and ``box_penalty`` 0 give paper 003's rule: the ratio alone.
    The best candidate is the object; a further one joins it only when it is disjoint from what is chosen
    (a piece of an occluded object) and fills at least ``add_ratio`` of the box; candidates that are parts
    of the chosen mask are absorbed. A penalised candidate is ranked down, never excluded. Pixels that only
    rejected candidates claim are uncertain. Returns (object mask, uncertain mask, ratios of the candidates).
    """
    h, w = candidates.shape[-2:]
    region = box_region(box, (h, w))
    ratio, score = candidate_scores(candidates, box, quality, box_rect, box_iou, box_penalty)
    flat = candidates.reshape(len(candidates), -1)
    area = flat.sum(1)
    inside = (flat & region.reshape(-1)).sum(1)
    valid = (area > 0) & (inside >= inside_frac * np.maximum(area, 1)) & (ratio >= min_ratio)
    chosen = np.zeros((h, w), bool)
    claimed = np.zeros((h, w), bool)
    for i in np.lexsort((-ratio, -score)):  # by score, then ratio; lexsort is stable
        if not valid[i]:
            continue
        m = candidates[i] & region
        claimed |= m
        if not chosen.any():
            chosen = m.copy()
        elif ratio[i] >= add_ratio and (m & chosen).sum() <= 0.1 * m.sum():
            chosen |= m
    return chosen, claimed & ~chosen, ratio
