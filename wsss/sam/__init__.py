"""SAM and SAM 2 as a model package: one engine per model, one image embedding per image.

The refiners that use it (``sam_cam_match``, ``sam_box``) and their mask selection are in
:mod:`wsss.masks.sam_refiners` and :mod:`wsss.masks.sam_selection`.
"""
from __future__ import annotations

from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, get_engine, load_sam_model, sam_resource_key

__all__ = ["AutoMaskParams", "SamEngine", "SamModelParams", "get_engine", "load_sam_model", "sam_resource_key"]
