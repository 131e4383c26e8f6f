"""Class activation maps through pytorch-grad-cam, for any of its methods by name."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

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
    """Runs one batched CAM call per image (the image repeated once per present class and target), or with
    :meth:`batch` one call for several images on an accelerator."""

    autocast_safe = True  # the target layer's output is cast back to float32 for pytorch-grad-cam

    def __init__(self, params: GradCamParams, resources: Resources) -> None:
        self.p = params
        self.classifier = get_classifier(resources)
        model = self.classifier.model
        size = params.input_size or self.classifier.input_size
        name = params.target_layer or self.classifier.target_layer
        self.layer_name, reshape, kind = resolve_target_layer(model, name, size)
        layer = model.get_submodule(self.layer_name)
        # under bf16 autocast pytorch-grad-cam would turn bf16 activations into numpy (unsupported): give it
        # float32 ones; prepended so its own hooks see them; returns None (no change) for float32 outputs
        self._float_hook = layer.register_forward_hook(_float32_output, prepend=True)
        self.cam = build_cam(params.method, model, layer, reshape, kind, params.batch_size)

    def release(self) -> None:
        """Remove the forward hooks pytorch-grad-cam (and this stage) put on the shared classifier."""
        self.cam.activations_and_grads.release()
        self._float_hook.remove()

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        if not rec.classes:
            return {}
        x1, owners, targets = self._inputs(rec)
        return self._finish(rec, x1, owners, self._run(x1.repeat(len(targets), 1, 1, 1), targets))

    def batch(self, recs: Sequence[Record], fuse: bool | None = None) -> list[dict[int, np.ndarray]]:
        """The maps of several images from one CAM call (``fuse``; default: when the classifier is not on
        the CPU). On the CPU each image keeps its own call: a fused batch is no faster there (one CPU core
        measured 5.0 s for 4 photos fused vs 3.8 s one by one) and changes the last bits of the head's
        matrix products (MKL picks its kernel by batch size), so labels could differ from the per-image run.
        Every input is resized to the one square input size, so any images batch together."""
        fuse = torch.device(self.classifier.device).type != "cpu" if fuse is None else fuse
        work = [r for r in recs if r.classes]
        if not fuse or len(work) < 2:
            return [self(r) for r in recs]
        inputs = [self._inputs(r) for r in work]
        x = torch.cat([x1.repeat(len(targets), 1, 1, 1) for x1, _, targets in inputs])
        maps = self._run(x, [t for _, _, targets in inputs for t in targets])
        out: dict[int, dict[int, np.ndarray]] = {}
        start = 0
        for rec, (x1, owners, targets) in zip(work, inputs):
            out[id(rec)] = self._finish(rec, x1, owners, maps[start:start + len(targets)])
            start += len(targets)
        return [out.get(id(r), {}) for r in recs]

    def _inputs(self, rec: Record) -> tuple[torch.Tensor, list[int], list[Callable]]:
        """(the image as a 1-image input, the class of each target, the targets) for ``rec.classes``."""
        x1 = self.classifier.preprocess([rec.image], self.p.input_size)
        probs = None  # an object class's targets are this image's top outputs
        if set(rec.classes) & set(self.classifier.object_classes):
            probs = cached_output_probabilities(self.classifier, rec.image, rec.cache, self.p.input_size)
        owners, targets = [], []
        for c in rec.classes:
            ts = self.classifier.cam_targets(c, probs)
            owners += [c] * len(ts)
            targets += ts
        return x1, owners, targets

    def _run(self, x: torch.Tensor, targets: list[Callable]) -> np.ndarray:
        """One map per row of ``x`` and target, at the input size."""
        if self.p.hflip:  # the mirrored copies ride in the same batch; their maps are mirrored back
            n = len(targets)
            maps = run_cam(self.cam, torch.cat([x, x.flip(3)]), targets + targets, self.p.aug_smooth, self.p.eigen_smooth)
            return 0.5 * (maps[:n] + maps[n:, :, ::-1])
        return run_cam(self.cam, x, targets, self.p.aug_smooth, self.p.eigen_smooth)

    def _finish(self, rec: Record, x1: torch.Tensor, owners: list[int], maps: np.ndarray) -> dict[int, np.ndarray]:
        """``rec``'s raw target maps -> one map per class at image resolution, in [0, 1] (and ROAD)."""
        maps = np.stack([fuse_max([m for o, m in zip(owners, maps) if o == c]) for c in rec.classes])
        if self.p.road:
            xc = x1.repeat(len(rec.classes), 1, 1, 1)
            targets = [probability_target(self.classifier, c) for c in rec.classes]
            with torch.autocast(torch.device(self.classifier.device).type, enabled=False):  # the score in float32
                scores = road_scores(self.classifier.model, xc, maps, targets, self.p.road_percentiles)
            road = {str(c): round(float(s), 5) for c, s in zip(rec.classes, scores)}
            rec.cache["road"] = road
            rec.extras["road"] = road
        h, w = rec.image.shape[:2]
        out = {}
        for c, m in zip(rec.classes, maps):
            m = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            out[c] = np.clip(m / max(float(m.max()), 1e-8), 0.0, 1.0)
        return out


def _float32_output(_module: torch.nn.Module, _inputs: object, output: object) -> object:
    if torch.is_tensor(output) and output.dtype in (torch.bfloat16, torch.float16):
        return output.float()
    return None


def fuse_max(maps: list[np.ndarray]) -> np.ndarray:
    """One map from several CAMs of a class: each scaled to a peak of 1, then the pixel-wise max."""
    if len(maps) == 1:
        return maps[0]
    return np.max([m / max(float(m.max()), 1e-8) for m in maps], axis=0)
