"""Class activation maps through pytorch-grad-cam, for any of its methods by name."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytorch_grad_cam

from wsss.record import Record, Resources


def cam_method_names() -> list[str]:
    """Every CAM class pytorch-grad-cam exports (GradCAM, ScoreCAM, EigenCAM, ...)."""
    from pytorch_grad_cam.base_cam import BaseCAM

    return sorted(n for n in dir(pytorch_grad_cam)
                  if isinstance(getattr(pytorch_grad_cam, n), type) and issubclass(getattr(pytorch_grad_cam, n), BaseCAM))


@dataclasses.dataclass
class GradCamParams:
    method: str = "GradCAM"
    target_layer: str | None = None  # dotted module name; null = found automatically
    input_size: int | None = None  # null = the classifier's training size
    aug_smooth: bool = False
    eigen_smooth: bool = False

    def __post_init__(self) -> None:
        if self.method not in cam_method_names():
            raise ValueError(f"cam.gradcam.method: unknown '{self.method}'; pytorch-grad-cam has {cam_method_names()}")


class GradCamStage:
    """Runs one batched CAM call per image: the image repeated once per present class."""

    def __init__(self, params: GradCamParams, resources: Resources) -> None:
        self.p = params
        self.classifier = resources.classifier
        model = self.classifier.model
        layer = model.get_submodule(params.target_layer or self.classifier.target_layer)
        self.cam = getattr(pytorch_grad_cam, params.method)(model=model, target_layers=[layer])

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        if not rec.classes:
            return {}
        x = self.classifier.preprocess([rec.image], self.p.input_size).repeat(len(rec.classes), 1, 1, 1)
        targets = [self.classifier.target(c) for c in rec.classes]
        maps = self.cam(input_tensor=x, targets=targets, aug_smooth=self.p.aug_smooth, eigen_smooth=self.p.eigen_smooth)
        h, w = rec.image.shape[:2]
        out = {}
        for c, m in zip(rec.classes, maps):
            m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            out[c] = np.clip(m / max(float(m.max()), 1e-8), 0.0, 1.0)
        return out
