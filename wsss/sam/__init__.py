"""SAM and SAM 2 as a model package: one engine per model, one image embedding per image.

Each family (``sam``, ``sam2``) is one adapter in :mod:`wsss.sam.adapters` (``ADAPTERS``); the engine in
:mod:`wsss.sam.engine` holds one and has no family branches. The refiners that use it (``sam_cam_match``,
``sam_box``) and their mask selection are in :mod:`wsss.masks.sam_refiners` and :mod:`wsss.masks.sam_selection`.
"""
from __future__ import annotations

from wsss.sam.adapters import ADAPTERS, Sam2Adapter, SamAdapter, SegmentAnythingAdapter
from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, get_engine, load_sam_model, sam_resource_key

__all__ = ["ADAPTERS", "AutoMaskParams", "Sam2Adapter", "SamAdapter", "SamEngine", "SamModelParams",
           "SegmentAnythingAdapter", "get_engine", "load_sam_model", "sam_resource_key"]
