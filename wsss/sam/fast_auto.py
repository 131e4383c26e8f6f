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

import math
from typing import Any, Literal

import numpy as np
import torch
from torchvision.ops import batched_nms

UPSAMPLE_CHUNK = 32  # survivors upsampled per call: bounds peak memory at full resolution


def _grid(points_per_side: int, h: int, w: int) -> np.ndarray:
    """The libraries' point grid (cell centres) in image pixels, float64 as they compute it."""
    from segment_anything.utils.amg import build_point_grid

    return build_point_grid(points_per_side) * np.array([w, h])[None]


class _SamDecoder:
    """segment_anything: prompt encoder + mask decoder on ``predictor.features``."""

    def __init__(self, predictor: Any) -> None:
        self.pred, self.model = predictor, predictor.model
        self.mask_threshold = float(self.model.mask_threshold)

    def __call__(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pr = self.pred
        coords = torch.as_tensor(pr.transform.apply_coords(points, pr.original_size), device=pr.device)
        labels = torch.ones(len(coords), dtype=torch.int, device=pr.device)
        sparse, dense = self.model.prompt_encoder(points=(coords[:, None], labels[:, None]), boxes=None, masks=None)
        low, iou = self.model.mask_decoder(image_embeddings=pr.features, image_pe=self.model.prompt_encoder.get_dense_pe(),
                                           sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                           multimask_output=True)
        return low, iou

    def frame(self, low_hw: tuple[int, int], orig_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
        """The low-res rows/cols that cover the image (SAM pads the resized image at the bottom/right) and
        the image pixels per low-res pixel (y, x)."""
        f = self.model.image_encoder.img_size / low_hw[0]
        ih, iw = self.pred.input_size
        return (math.ceil(ih / f), math.ceil(iw / f)), (f * orig_hw[0] / ih, f * orig_hw[1] / iw)

    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        return self.model.postprocess_masks(low[:, None], self.pred.input_size, orig_hw)[:, 0]


class _Sam2Decoder:
    """sam2: ``SAM2ImagePredictor._predict``'s encoder/decoder calls on ``predictor._features``, without its
    full-resolution upsampling of every mask."""

    mask_threshold = 0.0  # SAM2AutomaticMaskGenerator's default

    def __init__(self, predictor: Any) -> None:
        self.pred, self.model = predictor, predictor.model

    def __call__(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pr = self.pred
        pts = torch.as_tensor(points, dtype=torch.float32, device=pr.device)
        coords = pr._transforms.transform_coords(pts, normalize=True, orig_hw=pr._orig_hw[-1])
        labels = torch.ones(len(coords), dtype=torch.int, device=pr.device)
        sparse, dense = self.model.sam_prompt_encoder(points=(coords[:, None], labels[:, None]), boxes=None, masks=None)
        high_res = [f[-1].unsqueeze(0) for f in pr._features["high_res_feats"]]
        low, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=pr._features["image_embed"][-1].unsqueeze(0),
            image_pe=self.model.sam_prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=True, repeat_image=len(coords) > 1,
            high_res_features=high_res)
        return low, iou

    def frame(self, low_hw: tuple[int, int], orig_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
        # SAM 2 resizes the image to a square without padding: the whole low-res map is the image
        return low_hw, (orig_hw[0] / low_hw[0], orig_hw[1] / low_hw[1])

    def upsample(self, low: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        return self.pred._transforms.postprocess_masks(low[:, None], orig_hw)[:, 0]


def _stability(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold ± offset`` (the libraries' stability score)."""
    from segment_anything.utils.amg import calculate_stability_score

    return calculate_stability_score(logits, threshold, offset)


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """xyxy (inclusive) boxes of (N, H, W) bool masks; [0, 0, 0, 0] for an empty mask, as the libraries."""
    from segment_anything.utils.amg import batched_mask_to_box

    return batched_mask_to_box(masks)


def fast_auto_masks(predictor: Any, family: Literal["sam", "sam2"], orig_hw: tuple[int, int], points_per_side: int,
                    points_per_batch: int, pred_iou_thresh: float, stability_score_thresh: float,
                    stability_score_offset: float, box_nms_thresh: float) -> list[dict]:
    """Automatic masks of the image whose embedding ``predictor`` holds (set or restored beforehand).

    Returns the libraries' records: ``segmentation`` (H, W) bool, ``area``, ``bbox`` (xywh), ``predicted_iou``,
    ``stability_score`` (measured on the low-res logits), ``point_coords``, ``crop_box``; best score first.
    """
    dec = _SamDecoder(predictor) if family == "sam" else _Sam2Decoder(predictor)
    h, w = orig_hw
    grid = _grid(points_per_side, h, w)
    kept_low, kept_iou, kept_stab, kept_pts = [], [], [], []
    valid = scale = None
    for start in range(0, len(grid), points_per_batch):
        points = grid[start:start + points_per_batch]
        low, iou = dec(points)
        if valid is None:
            valid, scale = dec.frame(tuple(low.shape[-2:]), orig_hw)
        low, iou = low.flatten(0, 1), iou.flatten(0, 1)
        pts = torch.as_tensor(points, device=low.device).repeat_interleave(3, 0)
        keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
        low, iou, pts = low[keep], iou[keep], pts[keep]
        stab = _stability(low[:, :valid[0], :valid[1]], dec.mask_threshold, stability_score_offset)
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
    binary = low[:, :valid[0], :valid[1]] > dec.mask_threshold
    boxes = _mask_boxes(binary).float()
    sy, sx = scale
    boxes = torch.stack([boxes[:, 0] * sx, boxes[:, 1] * sy, (boxes[:, 2] + 1) * sx - 1, (boxes[:, 3] + 1) * sy - 1], 1)
    boxes[~binary.flatten(1).any(1)] = 0  # empty masks keep the libraries' zero box (NMS never merges them)
    keep = batched_nms(boxes, iou.float(), torch.zeros(len(boxes), device=boxes.device), box_nms_thresh)
    low, iou, stab, pts = low[keep], iou[keep], stab[keep], pts[keep]
    out: list[dict] = []
    for start in range(0, len(low), UPSAMPLE_CHUNK):
        masks = dec.upsample(low[start:start + UPSAMPLE_CHUNK], orig_hw) > dec.mask_threshold
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
