"""Choosing among SAM masks: paper 000's IoU match and paper 003's grouping inside a box.

Pure functions on boolean mask stacks, so the rules are tested on constructed masks.
"""
from __future__ import annotations

import numpy as np
import torch

from wsss.record import Box


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a`` (N, H, W) with every mask in ``b`` (M, H, W), as one matrix product."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    fa = torch.from_numpy(np.ascontiguousarray(a).reshape(len(a), -1)).float()
    fb = torch.from_numpy(np.ascontiguousarray(b).reshape(len(b), -1)).float()
    inter = fa @ fb.T
    union = fa.sum(1, keepdim=True) + fb.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy()


def prune_auto_masks(masks: np.ndarray, image: np.ndarray, max_area: float = 0.8, border_sides: int = 3,
                     black_level: float = 20.0) -> np.ndarray:
    """Indices of automatic masks to keep (paper 000 drops masks that are the viewport or its artefacts).

    Dropped: masks covering more than ``max_area`` of the image; masks touching at least
    ``border_sides`` image edges (frames; 0 disables); masks whose mean image intensity is below
    ``black_level`` (the black frame of endoscopy images; 0 disables).
    """
    if len(masks) == 0:
        return np.zeros(0, int)
    area = masks.reshape(len(masks), -1).mean(1)
    keep = area <= max_area
    if border_sides:
        sides = (masks[:, 0, :].any(1).astype(int) + masks[:, -1, :].any(1) + masks[:, :, 0].any(1)
                 + masks[:, :, -1].any(1))
        keep &= sides < border_sides
    if black_level > 0:
        gray = image.astype(np.float32).mean(2).reshape(-1)
        flat = masks.reshape(len(masks), -1).astype(np.float32)
        mean = flat @ gray / np.maximum(flat.sum(1), 1)
        keep &= mean >= black_level
    return np.flatnonzero(keep)


def match_box_mask(box_mask: np.ndarray, auto: np.ndarray, min_iou: float = 0.1) -> tuple[np.ndarray, float, int]:
    """Paper 000: the automatic mask with the best IoU against the box-prompt mask if it beats ``min_iou``.

    Returns (mask, best IoU, index into ``auto`` or -1 when the box mask is kept).
    """
    if len(auto) == 0:
        return box_mask, 0.0, -1
    ious = iou_matrix(box_mask[None], auto)[0]
    best = int(ious.argmax())
    if ious[best] > min_iou:
        return auto[best], float(ious[best]), best
    return box_mask, float(ious[best]), -1


def box_region(box: Box, shape: tuple[int, int]) -> np.ndarray:
    region = np.zeros(shape, bool)
    region[max(box.y0, 0): box.y1, max(box.x0, 0): box.x1] = True
    return region


def group_in_box(candidates: np.ndarray, box: Box, inside_frac: float = 0.8, add_ratio: float = 0.2,
                 min_ratio: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper 003's hierarchical grouping: whole objects before their parts.

    Candidates mostly inside the box (``inside_frac`` of their pixels) are ranked by their overlap
    ratio with the box, |mask ∩ box| / |box|: a whole object fills more of its box than any part.
    The best one is the object; a further candidate joins it only when it is disjoint from what is
    chosen (a piece of an occluded object) and fills at least ``add_ratio`` of the box; candidates
    that are parts of the chosen mask are absorbed. Pixels that only rejected candidates claim are
    uncertain. Returns (object mask, uncertain mask, ratios of the candidates).
    """
    h, w = candidates.shape[-2:]
    region = box_region(box, (h, w))
    box_area = max(int(region.sum()), 1)
    flat = candidates.reshape(len(candidates), -1)
    area = flat.sum(1)
    inside = (flat & region.reshape(-1)).sum(1)
    ratio = inside / box_area
    valid = (area > 0) & (inside >= inside_frac * np.maximum(area, 1)) & (ratio >= min_ratio)
    chosen = np.zeros((h, w), bool)
    claimed = np.zeros((h, w), bool)
    for i in np.argsort(-ratio, kind="stable"):
        if not valid[i]:
            continue
        m = candidates[i] & region
        claimed |= m
        if not chosen.any():
            chosen = m.copy()
        elif ratio[i] >= add_ratio and (m & chosen).sum() <= 0.1 * m.sum():
            chosen |= m
    return chosen, claimed & ~chosen, ratio
