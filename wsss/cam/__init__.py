"""CAM stage: one activation map per present class, chosen by ``cam.name``.

Interface: ``cam(record) -> {class: HxW float32 map in [0, 1] at image resolution}``.
"""
from __future__ import annotations

from wsss.cam.base import CamMethod
from wsss.cam.gradcam import GradCamParams, GradCamStage
from wsss.cam.rcam import RCamParams, RCamStage
from wsss.registry import Registry

CAM_METHODS = Registry("cam")
CAM_METHODS.register("gradcam", params=GradCamParams)(GradCamStage)
CAM_METHODS.register("rcam", params=RCamParams)(RCamStage)  # paper 002; its refiner is wsss.masks.rcam


@CAM_METHODS.register("none")
class NoCam(CamMethod):
    """For pipelines that localise without CAMs (given or detector boxes)."""

    def __init__(self, params: None, resources: object) -> None:
        pass

    def __call__(self, rec: object) -> dict:
        return {}

__all__ = ["CAM_METHODS", "GradCamParams", "GradCamStage"]
