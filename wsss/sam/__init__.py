"""SAM and SAM 2 behind one engine (one image embedding per image); the refiners are in wsss.sam.refiners."""
from __future__ import annotations

from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, get_engine, load_sam_model, sam_resource_key
from wsss.sam.selection import group_in_box, iou_matrix, match_box_mask, prune_auto_masks

__all__ = ["AutoMaskParams", "SamEngine",
           "SamModelParams", "get_engine", "group_in_box", "iou_matrix", "load_sam_model", "match_box_mask",
           "prune_auto_masks", "sam_resource_key"]
