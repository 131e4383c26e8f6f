"""Class activation maps through pytorch-grad-cam, for any of its methods by name."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np
import torch

from wsss.cam.base import CamMethod
from wsss.cam.methods import build_cam, cam_method_names, run_cam
from wsss.cam.road import road_scores
from wsss.classifier import get_classifier
from wsss.classifier.model import cached_output_probabilities
from wsss.models.layers import resolve_target_layer
from wsss.record import Record, Resources

__all__ = ["GradCamParams", "GradCamStage", "cam_method_names", "probability_target"]


@dataclasses.dataclass
class GradCamParams:
    method: str = "GradCAM"
    target_layer: str | None = None  # dotted module name; null = found automatically
    input_size: int | None = None  # null = the classifier's training size
    aug_smooth: bool = False
    eigen_smooth: bool = False
    hflip: bool = False  # average each CAM with the CAM of the mirrored image (one batch, twice the cost)
    batch_size: int = 16  # ScoreCAM / AblationCAM forward passes per batch
    road: bool = False  # record the ROAD score of each CAM (manifest 'extras.road')
    road_percentiles: list[int] = dataclasses.field(default_factory=lambda: [20, 40, 60, 80])

    def __post_init__(self) -> None:
        if self.method not in cam_method_names():
            raise ValueError(f"cam.gradcam.method: unknown '{self.method}'; pytorch-grad-cam has {cam_method_names()}")


def probability_target(classifier: object, cls: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Class ``cls``'s probability for ROAD, by the same rule the labels use (``Classifier.class_probability``)."""

    def score(output: torch.Tensor) -> torch.Tensor:
        rows = classifier.probabilities(output.reshape(-1, output.shape[-1]))
        return torch.tensor([classifier.class_probability(r, cls) for r in rows]).reshape(output.shape[:-1])

    return score


class GradCamStage(CamMethod):
    """Runs one batched CAM call per image: the image repeated once per present class."""

    def __init__(self, params: GradCamParams, resources: Resources) -> None:
        self.p = params
        self.classifier = get_classifier(resources)
        model = self.classifier.model
        size = params.input_size or self.classifier.input_size
        name = params.target_layer or self.classifier.target_layer
        self.layer_name, reshape, kind = resolve_target_layer(model, name, size)
        self.cam = build_cam(params.method, model, model.get_submodule(self.layer_name), reshape, kind, params.batch_size)

    def release(self) -> None:
        """Remove the forward hooks pytorch-grad-cam put on the shared classifier."""
        self.cam.activations_and_grads.release()

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        if not rec.classes:
            return {}
        x1 = self.classifier.preprocess([rec.image], self.p.input_size)
        probs = None  # an object class's targets are this image's top outputs
        if set(rec.classes) & set(self.classifier.object_classes):
            probs = cached_output_probabilities(self.classifier, rec.image, rec.cache, self.p.input_size)
        owners, targets = [], []
        for c in rec.classes:
            ts = self.classifier.cam_targets(c, probs)
            owners += [c] * len(ts)
            targets += ts
        x = x1.repeat(len(targets), 1, 1, 1)
        if self.p.hflip:  # the mirrored copies ride in the same batch; their maps are mirrored back
            n = len(targets)
            maps = run_cam(self.cam, torch.cat([x, x.flip(3)]), targets + targets, self.p.aug_smooth, self.p.eigen_smooth)
            maps = 0.5 * (maps[:n] + maps[n:, :, ::-1])
        else:
            maps = run_cam(self.cam, x, targets, self.p.aug_smooth, self.p.eigen_smooth)
        maps = np.stack([fuse_max([m for o, m in zip(owners, maps) if o == c]) for c in rec.classes])
        if self.p.road:
            xc = x1.repeat(len(rec.classes), 1, 1, 1)
            scores = road_scores(self.classifier.model, xc, maps, [probability_target(self.classifier, c) for c in rec.classes],
                                 self.p.road_percentiles)
            road = {str(c): round(float(s), 5) for c, s in zip(rec.classes, scores)}
            rec.cache["road"] = road
            rec.extras["road"] = road
        h, w = rec.image.shape[:2]
        out = {}
        for c, m in zip(rec.classes, maps):
            m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            out[c] = np.clip(m / max(float(m.max()), 1e-8), 0.0, 1.0)
        return out


def fuse_max(maps: list[np.ndarray]) -> np.ndarray:
    """One map from several CAMs of a class: each scaled to a peak of 1, then the pixel-wise max."""
    if len(maps) == 1:
        return maps[0]
    return np.max([m / max(float(m.max()), 1e-8) for m in maps], axis=0)
