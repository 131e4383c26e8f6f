"""Masks stage: refine localisation into a label map, chosen by ``masks.name``.

Interface: ``refiner(record) -> HxW uint8 label map`` (0 = background, 255 = ignore).
"""
from __future__ import annotations

from wsss.masks.cam_threshold import CamThreshold, CamThresholdParams
from wsss.masks.compose import compose_label_map
from wsss.masks.grabcut_box import GrabCutBox, GrabCutBoxParams
from wsss.masks.grabcut_cam import GrabCutCam, GrabCutCamParams, cam_to_grabcut_mask, variant_thresholds
from wsss.masks.rcam import RCamParams, RCamRefiner
from wsss.masks.sam_refiners import SamBox, SamBoxParams, SamCamMatch, SamCamMatchParams
from wsss.registry import Registry

REFINERS = Registry("masks")
REFINERS.register("cam_threshold", params=CamThresholdParams)(CamThreshold)
REFINERS.register("grabcut_cam", params=GrabCutCamParams)(GrabCutCam)
REFINERS.register("grabcut_box", params=GrabCutBoxParams)(GrabCutBox)
REFINERS.register("rcam", params=RCamParams)(RCamRefiner)
REFINERS.register("sam_cam_match", params=SamCamMatchParams)(SamCamMatch)
REFINERS.register("sam_box", params=SamBoxParams)(SamBox)

__all__ = ["REFINERS", "cam_to_grabcut_mask", "compose_label_map", "variant_thresholds"]
