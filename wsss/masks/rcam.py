"""Masks stage ``rcam`` (paper 002): rCAM or rCAM_Box thresholded per class into a label map.

The rCAM maps themselves are a CAM method (:mod:`wsss.cam.rcam`); this refiner reuses the CAM stage's
maps when that stage computed them with the same parameters.
"""
from __future__ import annotations

import numpy as np

from wsss.cam.base import CamMethod
from wsss.cam.rcam import RCamParams, RCamStage, shared_rcam
from wsss.masks.base import Refiner
from wsss.masks.compose import compose_label_map
from wsss.record import Record, Resources


class RCamRefiner(Refiner):
    """Masks stage ``rcam``: rCAM (scope image) or rCAM_Box (scope box) thresholded per class."""

    reads_cams = False  # it computes its own maps (reusing the CAM stage's when that stage is this rCAM)

    def __init__(self, params: RCamParams, resources: Resources) -> None:
        self.p = params
        self.rcam = shared_rcam(resources, params)

    def uses_cam_stage(self, cam: CamMethod) -> bool:
        """Only a CAM stage that is this very rCAM (``cam.name: rcam`` with the same parameters) feeds the
        refiner, through ``rec.cache``: it is then the refiner's own work, done once. Any other CAM stage
        (Grad-CAM) is ignored by the label map, and the pipeline may skip it."""
        return self.p.scope == "image" and isinstance(cam, RCamStage) and cam.rcam is self.rcam

    def class_maps(self, rec: Record) -> dict[int, np.ndarray]:
        if self.p.scope == "box":
            return self.rcam.box_maps(rec.image, rec.boxes)
        # the CAM stage `rcam` already computed them when its parameters are the same object's
        cached = rec.cache.get("rcam_stages") if rec.cache.get("rcam_by") is self.rcam else None
        stages = cached if cached is not None and set(cached) >= set(rec.classes) else self.rcam.maps(rec.image, rec.classes)
        rec.cache["rcam_stages"], rec.cache["rcam_by"] = stages, self.rcam
        return {c: stages[c]["rcam"] for c in rec.classes}

    def __call__(self, rec: Record) -> np.ndarray:
        maps = self.class_maps(rec)
        masks = {c: m >= self.p.threshold for c, m in maps.items()}
        if self.p.scope == "box":  # rCAM_Box claims nothing outside its boxes, whatever the threshold
            inside = {c: np.zeros(rec.image.shape[:2], bool) for c in masks}
            for b in rec.boxes:
                inside[b.cls][b.y0:b.y1, b.x0:b.x1] = True
            masks = {c: m & inside[c] for c, m in masks.items()}
        return compose_label_map(rec.image.shape[:2], masks, maps, self.p.overlap)
