"""Masks stage: refine localisation into a label map, chosen by ``masks.name``.

Interface: ``refiner(record) -> HxW uint8 label map`` (0 = background, 255 = ignore).
"""
from __future__ import annotations

from wsss.masks.cam_threshold import CamThreshold, CamThresholdParams
from wsss.masks.compose import compose_label_map
from wsss.masks.grabcut_cam import GrabCutCam, GrabCutCamParams, cam_to_grabcut_mask, variant_thresholds
from wsss.registry import Registry

REFINERS = Registry("masks")
REFINERS.register("cam_threshold", params=CamThresholdParams)(CamThreshold)
REFINERS.register("grabcut_cam", params=GrabCutCamParams)(GrabCutCam)

__all__ = ["REFINERS", "cam_to_grabcut_mask", "compose_label_map", "variant_thresholds"]
