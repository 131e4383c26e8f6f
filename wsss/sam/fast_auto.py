"""Automatic masks from a cached embedding: the libraries' generator without its RLE round trip.

The libraries' generators (``SamAutomaticMaskGenerator``, ``SAM2AutomaticMaskGenerator``; single full-image
crop) upsample every decoded mask (3 per grid point) to the image size, filter by predicted IoU and stability,
RLE-encode the survivors, run box NMS and decode the RLEs again. Profiled on CPU (tiny SAM, 16² points), RLE
encoding and ``MaskData.cat``'s deep copies of the RLE lists took ~83 % of ``generate()``.

Here the same point grid and batches go through the prompt encoder + mask decoder directly (the adapter's
``decode_point_masks``: ``wsss.sam.decoders``), and:

1. the predicted-IoU filter runs on the decoder's IoU head before anything is upsampled (it does not depend
   on the mask, so this is exact and skips upsampling the masks it drops, and the decoder's upscaling of a
   prompt that keeps none);
2. the survivors are upsampled in chunks with the library's own upsampling; stability scores, the binary masks
   and their boxes are computed there, at image resolution, with the library's functions (exact);
3. the binary masks stay on the device as bit-packed tensors (1/8 of a bool mask, never RLE) until box NMS
   over all of them (the library's ``batched_nms`` on the same boxes and scores, in the same order) picks the
   survivors, which alone are unpacked.

So the output equals the library's for any decoder: the same masks, in the same order, with the same
``predicted_iou``, ``stability_score``, ``bbox`` and ``area`` (tests/test_sam_fast_auto.py compares them on
random-weight vit_b and hiera-t models and on blocky decoders; docs/sam.md, "Fidelity"). The library's
crop-edge filter (``is_box_near_crop_edge``) never removes a mask of the full-image crop, so it is left out.

``points`` restricts the grid (paper 000's box grid, :func:`grid_in_boxes`): the masks are then the ones the
library would produce from those points alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torchvision.ops import batched_nms

if TYPE_CHECKING:
    from wsss.sam.adapters import SamAdapter

UPSAMPLE_CHUNK = 32  # masks upsampled per call: bounds peak memory at full resolution (32 float maps)
# at most this many prompts per decoder call when a caller asks for one batch (the box grid): on vit_b the
# decoder holds ~10 MB per prompt (measured on CPU), and its cost per prompt is flat in the batch size on CPU
MAX_POINTS_PER_CALL = 256
_BITS = 8


def point_grid(points_per_side: int, h: int, w: int) -> np.ndarray:
    """The libraries' point grid (cell centres, row by row) in image pixels, float64 as they compute it."""
    from segment_anything.utils.amg import build_point_grid

    return build_point_grid(points_per_side) * np.array([w, h])[None]



def grid_in_boxes(grid: np.ndarray, boxes_xyxy: np.ndarray, margin: float) -> np.ndarray:
    """Indices (ascending, so in grid order) of the grid points inside any box grown by ``margin``.

    Each box grows by ``margin`` × its width (height) on the left and right (top and bottom). A box that
    holds no grid point even then contributes the grid point nearest its centre, so a small object still
    gets automatic masks to match against (the full grid would offer it only masks from points around it).
    """
    grid = np.asarray(grid, np.float64)
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    chosen = np.zeros(len(grid), bool)
    for x0, y0, x1, y1 in boxes:
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        inside = ((grid[:, 0] >= x0 - mx) & (grid[:, 0] <= x1 + mx)
                  & (grid[:, 1] >= y0 - my) & (grid[:, 1] <= y1 + my))
        if not inside.any():
            centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
            inside[int(np.argmin(((grid - centre) ** 2).sum(1)))] = True
        chosen |= inside
    return np.flatnonzero(chosen)


def _stability(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold ± offset`` (the libraries' stability score, their code)."""
    from segment_anything.utils.amg import calculate_stability_score

    return calculate_stability_score(logits, threshold, offset)


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """xyxy (inclusive) boxes of (N, H, W) bool masks; [0, 0, 0, 0] for an empty mask, as the libraries."""
    from segment_anything.utils.amg import batched_mask_to_box

    return batched_mask_to_box(masks)


def pack_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, ceil(H·W / 8)) uint8, 8 pixels a byte (on the masks' device)."""
    flat = masks.flatten(1)
    pad = (-flat.shape[1]) % _BITS
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    weights = torch.tensor([1 << b for b in range(_BITS)], dtype=torch.uint8, device=masks.device)
    # distinct bits: the sum is their OR and stays below 256
    return (flat.reshape(len(flat), flat.shape[1] // _BITS, _BITS).to(torch.uint8) * weights).sum(-1, dtype=torch.uint8)


def unpack_masks(packed: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`pack_masks`: (N, H, W) bool."""
    shifts = torch.arange(_BITS, dtype=torch.uint8, device=packed.device)
    bits = (packed[:, :, None] >> shifts) & 1
    return bits.flatten(1)[:, :hw[0] * hw[1]].reshape(len(packed), *hw).bool()


def _decode(adapter: SamAdapter, batch: np.ndarray, min_iou: float,
            decode_batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kept masks of ``batch``, decoded ``decode_batch`` prompts at a time (0: all at once), in batch order.

    A short last pass is padded with copies of its last point (their masks dropped), so every pass has one shape
    and a compiled decoder (``pseudo.compile``) is not recompiled for each remainder."""
    if decode_batch <= 0:  # the library's numbers
        decoded = adapter.decode_point_masks(batch, min_iou)
        return decoded.low, decoded.iou, decoded.prompt
    lows, ious, prompts = [], [], []
    for s in range(0, len(batch), decode_batch):
        part = batch[s:s + decode_batch]
        n = len(part)
        if n < decode_batch and len(batch) > decode_batch:
            part = np.concatenate([part, np.repeat(part[-1:], decode_batch - n, 0)])
        decoded = adapter.decode_point_masks(part, min_iou, fast=True)
        real = decoded.prompt < n
        lows.append(decoded.low[real])
        ious.append(decoded.iou[real])
        prompts.append(decoded.prompt[real] + s)
    return torch.cat(lows), torch.cat(ious), torch.cat(prompts)


def fast_auto_masks(adapter: SamAdapter, orig_hw: tuple[int, int], points_per_side: int, points_per_batch: int,
                    pred_iou_thresh: float, stability_score_thresh: float, stability_score_offset: float,
                    box_nms_thresh: float, points: np.ndarray | None = None, decode_batch: int = 0) -> list[dict]:
    """Automatic masks of the image whose embedding ``adapter``'s predictor holds (encoded or restored beforehand).

    ``points`` (N, 2) xy image pixels replace the ``points_per_side`` grid (e.g. a subset of it from
    :func:`grid_in_boxes`). ``decode_batch`` > 0 splits each batch into decoder passes of that many prompts
    (the masks' order is unchanged). The family-specific parts (decoding points, the upsampling) are the adapter's.

    Returns the libraries' records: ``segmentation`` (H, W) bool, ``area``, ``bbox`` (xywh), ``predicted_iou``,
    ``stability_score``, ``point_coords``, ``crop_box``; in the library's order (NMS: best score first).
    """
    h, w = orig_hw
    grid = point_grid(points_per_side, h, w) if points is None else np.asarray(points, np.float64).reshape(-1, 2)
    threshold = adapter.mask_threshold
    kept: dict[str, list[torch.Tensor]] = {"packed": [], "boxes": [], "iou": [], "stab": [], "pts": []}
    for start in range(0, len(grid), points_per_batch):
        batch = grid[start:start + points_per_batch]
        # the predicted-IoU filter on the IoU head alone (exact): the masks it drops are never upsampled, and a
        # prompt with none kept is not even upscaled by the decoder (wsss.sam.decoders)
        low, iou, prompt = _decode(adapter, batch, pred_iou_thresh, decode_batch)
        pts = torch.as_tensor(batch, device=low.device)[prompt]
        for c in range(0, len(low), UPSAMPLE_CHUNK):
            logits = adapter.upsample(low[c:c + UPSAMPLE_CHUNK], orig_hw)  # the library's upsampling
            stab = _stability(logits, threshold, stability_score_offset)
            keep = stab >= stability_score_thresh if stability_score_thresh > 0 else torch.ones_like(stab, dtype=torch.bool)
            masks = logits[keep] > threshold
            kept["packed"].append(pack_masks(masks))
            kept["boxes"].append(_mask_boxes(masks))
            kept["iou"].append(iou[c:c + UPSAMPLE_CHUNK][keep])
            kept["stab"].append(stab[keep])
            kept["pts"].append(pts[c:c + UPSAMPLE_CHUNK][keep])
            del logits, masks
    if not kept["iou"] or sum(len(t) for t in kept["iou"]) == 0:
        return []
    packed, boxes, iou, stab, pts = (torch.cat(kept[k]) for k in ("packed", "boxes", "iou", "stab", "pts"))
    # the library's NMS call: one category, the same boxes and scores in the same (grid, batch) order
    keep = batched_nms(boxes.float(), iou, torch.zeros(len(boxes), device=boxes.device), box_nms_thresh)
    out: list[dict] = []
    for c in range(0, len(keep), UPSAMPLE_CHUNK):
        idx = keep[c:c + UPSAMPLE_CHUNK]
        masks = unpack_masks(packed[idx], (h, w))
        areas = masks.flatten(1).sum(1).cpu().numpy()
        masks_np = masks.cpu().numpy()
        for j, i in enumerate(idx.tolist()):
            x0, y0, x1, y1 = boxes[i].tolist()
            out.append({"segmentation": masks_np[j], "area": int(areas[j]), "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "predicted_iou": float(iou[i]), "stability_score": float(stab[i]),
                        "point_coords": [pts[i].tolist()], "crop_box": [0, 0, w, h]})
    return out
