"""Automatic masks from a cached embedding, filtered on the decoder's low-resolution logits.

The libraries' generators upsample every decoded mask (3 per grid point) to the image size before
any filtering, compute stability scores there, RLE-encode every kept mask, run NMS and decode the
RLEs again. Profiled on CPU (tiny SAM, 16² points), RLE encoding and ``MaskData.cat``'s deep copies
of the RLE lists took ~83 % of ``generate()``, the decoder ~11 %. Here the same point grid and
batches go through the prompt encoder + mask decoder directly; the predicted-IoU filter, stability
scores, boxes and NMS work on the low-res logits (the part of them that covers the image, mapped to
image coordinates); only the surviving masks are upsampled, with the library's own upsampling, so a
mask that survives is pixel-identical to the library's. What can differ: the stability score is
measured at low resolution (it filters slightly differently near ``stability_score_thresh``) and NMS
compares low-res boxes (a few pixels coarser), so borderline masks may be kept or dropped differently.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torchvision.ops import batched_nms

if TYPE_CHECKING:
    from wsss.sam.adapters import SamAdapter

UPSAMPLE_CHUNK = 32  # survivors upsampled per call: bounds peak memory at full resolution


def _grid(points_per_side: int, h: int, w: int) -> np.ndarray:
    """The libraries' point grid (cell centres) in image pixels, float64 as they compute it."""
    from segment_anything.utils.amg import build_point_grid

    return build_point_grid(points_per_side) * np.array([w, h])[None]


def _stability(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold ± offset`` (the libraries' stability score)."""
    from segment_anything.utils.amg import calculate_stability_score

    return calculate_stability_score(logits, threshold, offset)


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """xyxy (inclusive) boxes of (N, H, W) bool masks; [0, 0, 0, 0] for an empty mask, as the libraries."""
    from segment_anything.utils.amg import batched_mask_to_box

    return batched_mask_to_box(masks)


def fast_auto_masks(adapter: SamAdapter, orig_hw: tuple[int, int], points_per_side: int, points_per_batch: int,
                    pred_iou_thresh: float, stability_score_thresh: float, stability_score_offset: float,
                    box_nms_thresh: float) -> list[dict]:
    """Automatic masks of the image whose embedding ``adapter``'s predictor holds (encoded or restored beforehand).

    The family-specific parts (decoding the grid's points, which low-res pixels cover the image, the upsampling)
    are the adapter's (``wsss.sam.adapters``).

    Returns the libraries' records: ``segmentation`` (H, W) bool, ``area``, ``bbox`` (xywh), ``predicted_iou``,
    ``stability_score`` (measured on the low-res logits), ``point_coords``, ``crop_box``; best score first.
    """
    h, w = orig_hw
    grid = _grid(points_per_side, h, w)
    kept_low, kept_iou, kept_stab, kept_pts = [], [], [], []
    valid = scale = None
    for start in range(0, len(grid), points_per_batch):
        points = grid[start:start + points_per_batch]
        low, iou = adapter.decode_points(points)
        if valid is None:
            valid, scale = adapter.low_res_frame(tuple(low.shape[-2:]), orig_hw)
        low, iou = low.flatten(0, 1), iou.flatten(0, 1)
        pts = torch.as_tensor(points, device=low.device).repeat_interleave(3, 0)
        keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
        low, iou, pts = low[keep], iou[keep], pts[keep]
        stab = _stability(low[:, :valid[0], :valid[1]], adapter.mask_threshold, stability_score_offset)
        if stability_score_thresh > 0:
            keep = stab >= stability_score_thresh
            low, iou, pts, stab = low[keep], iou[keep], pts[keep], stab[keep]
        kept_low.append(low)
        kept_iou.append(iou)
        kept_stab.append(stab)
        kept_pts.append(pts)
    low, iou, stab, pts = (torch.cat(t) for t in (kept_low, kept_iou, kept_stab, kept_pts))
    if len(low) == 0:
        return []
    # NMS on low-res boxes mapped to image pixels (inclusive xyxy as the libraries')
    binary = low[:, :valid[0], :valid[1]] > adapter.mask_threshold
    boxes = _mask_boxes(binary).float()
    sy, sx = scale
    boxes = torch.stack([boxes[:, 0] * sx, boxes[:, 1] * sy, (boxes[:, 2] + 1) * sx - 1, (boxes[:, 3] + 1) * sy - 1], 1)
    boxes[~binary.flatten(1).any(1)] = 0  # empty masks keep the libraries' zero box (NMS never merges them)
    keep = batched_nms(boxes, iou.float(), torch.zeros(len(boxes), device=boxes.device), box_nms_thresh)
    low, iou, stab, pts = low[keep], iou[keep], stab[keep], pts[keep]
    out: list[dict] = []
    for start in range(0, len(low), UPSAMPLE_CHUNK):
        masks = adapter.upsample(low[start:start + UPSAMPLE_CHUNK], orig_hw) > adapter.mask_threshold
        full_boxes = _mask_boxes(masks).cpu().numpy()
        areas = masks.flatten(1).sum(1).cpu().numpy()
        masks = masks.cpu().numpy()
        for j in range(len(masks)):
            x0, y0, x1, y1 = full_boxes[j].tolist()
            i = start + j
            out.append({"segmentation": masks[j], "area": int(areas[j]), "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "predicted_iou": float(iou[i]), "stability_score": float(stab[i]),
                        "point_coords": [pts[i].tolist()], "crop_box": [0, 0, w, h]})
    return out
