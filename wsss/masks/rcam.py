"""rCAM (paper 002): high-resolution CAMs from two input scales, shape guides and a dense CRF.

Per class c of an image:
  1. CAM_k and the class probability P_k(c) at input scales s_1 < s_2 (224 and 448 by default);
     the CAM is Grad-CAM on the classifier's target layer, which is the CAM of Zhou et al. for a
     GAP + linear head, at the layer's native resolution.
  2. Shape guides S_k: the first 3 principal components of a stride-8 feature map (mid-level).
  3. rCAM_1 = GF(U(GF(U(CAM_1), S_1)), S_2), rCAM_2 = GF(U(CAM_2), S_2): guided-filter upsampling,
     each window radius the sigma of a Gaussian variogram fitted to its guide.
  4. rCAM_3 = rCAM_1 * P_1(c) + rCAM_2 * P_2(c), normalised to [0, 1].
  5. rCAM = P(foreground) of a dense CRF on (1 - rCAM_3, rCAM_3).
rCAM_Box (scope ``box``) runs the same on each box's crop and keeps what lies inside the box.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
import torch

from wsss.cam import CAM_METHODS
from wsss.cam.layers import find_guide_layer, resolve_target_layer
from wsss.masks.compose import compose_label_map
from wsss.masks.crf import CrfParams, crf_foreground
from wsss.masks.grabcut_cam import _crop
from wsss.masks.guided_filter import guided_filter, variogram_radius
from wsss.record import Record, Resources

STAGES = ("cam1", "cam2", "rcam1", "rcam2", "rcam3", "rcam")


@dataclasses.dataclass
class RCamParams:
    scales: list[int] = dataclasses.field(default_factory=lambda: [224, 448])
    target_layer: str | None = None  # CAM layer; null = the classifier's
    guide_layer: str | None = None  # shape-guide layer; null = the last stride-`guide_stride` module
    guide_stride: int = 8
    radius: int | None = None  # guided-filter window radius; null = fitted variogram sigma per guide
    eps: float = 1e-2  # guided-filter regularisation (guides are scaled to [0, 1])
    crf: bool = True
    crf_params: CrfParams = dataclasses.field(default_factory=CrfParams)
    threshold: float = 0.5  # rCAM >= threshold is the class (masks stage)
    scope: Literal["image", "box"] = "image"  # 'box' = rCAM_Box on rec.boxes
    margin: float = 0.15  # context around a box for rCAM_Box
    overlap: Literal["score", "ignore"] = "score"

    def __post_init__(self) -> None:
        if len(self.scales) != 2 or not 0 < self.scales[0] <= self.scales[1]:
            raise ValueError(f"rcam.scales must be two sizes s1 <= s2 (paper: [224, 448]), got {self.scales}")


def pca_guide(features: torch.Tensor, components: int = 3) -> np.ndarray:
    """``(C, h, w)`` features -> ``(h, w, components)`` principal components, each scaled to [0, 1]."""
    c, h, w = features.shape
    x = features.detach().double().reshape(c, -1).T
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    k = min(components, v.shape[0])
    proj = (x @ v[:k].T).numpy().reshape(h, w, k)
    lo, hi = proj.min((0, 1), keepdims=True), proj.max((0, 1), keepdims=True)
    return (proj - lo) / np.maximum(hi - lo, 1e-12)


def _resize(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(np.asarray(m, np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.clip(m, 0.0, None)
    return (m / max(float(m.max()), 1e-8)).astype(np.float32)


class RCam:
    """Computes rCAM and its intermediate maps with one classifier (loaded once via Resources)."""

    def __init__(self, classifier: object, p: RCamParams) -> None:
        self.clf = classifier
        self.p = p
        model = classifier.model
        probe = p.scales[0]
        name = p.target_layer or getattr(classifier, "target_layer", None)
        self.cam_layer, self.reshape, _ = resolve_target_layer(model, name, probe)
        self.guide_layer = p.guide_layer or find_guide_layer(model, probe, p.guide_stride)

    def _scale(self, image: np.ndarray, classes: list[int], size: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """CAMs (native resolution), probabilities and the PCA guide for one input size."""
        model = self.clf.model
        store: dict[str, torch.Tensor] = {}
        transform: Callable = self.reshape or (lambda t: t)

        def keep_cam(_m: object, _i: object, o: torch.Tensor) -> None:
            o.retain_grad()
            store["cam"] = o

        hooks = [model.get_submodule(self.cam_layer).register_forward_hook(keep_cam),
                 model.get_submodule(self.guide_layer).register_forward_hook(
                     lambda _m, _i, o: store.__setitem__("guide", o.detach()))]
        x = self.clf.preprocess([image], size).repeat(len(classes), 1, 1, 1)
        try:
            with torch.enable_grad():
                logits = model(x)
                score = sum(self.clf.target(c)(logits[i]) for i, c in enumerate(classes))
                model.zero_grad(set_to_none=True)
                score.backward()
        finally:
            for h in hooks:
                h.remove()
        acts, grads = transform(store["cam"].detach()), transform(store["cam"].grad)
        cams = torch.relu((grads.mean((2, 3), keepdim=True) * acts).sum(1)).cpu().numpy()
        probs = self.clf.probabilities(logits.detach()).cpu().numpy()
        pc = np.array([probs[i, self.clf.class_groups[c]].max() for i, c in enumerate(classes)])
        return [_unit(m) for m in cams], pc, pca_guide(store["guide"][0].cpu())

    def _filter(self, cam: np.ndarray, guide: np.ndarray, radius: int) -> np.ndarray:
        return _unit(guided_filter(guide, _resize(cam, guide.shape[:2]), radius, self.p.eps))

    def maps(self, image: np.ndarray, classes: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """``{class: {stage: HxW map in [0, 1]}}`` for the stages CAM_1, CAM_2, rCAM_1..3 and rCAM."""
        if not classes:
            return {}
        h, w = image.shape[:2]
        cams1, p1, s1 = self._scale(image, classes, self.p.scales[0])
        cams2, p2, s2 = self._scale(image, classes, self.p.scales[1])
        r1 = self.p.radius or variogram_radius(s1)
        r2 = self.p.radius or variogram_radius(s2)
        out: dict[int, dict[str, np.ndarray]] = {}
        for i, c in enumerate(classes):
            rcam1 = self._filter(self._filter(cams1[i], s1, r1), s2, r2)
            rcam2 = self._filter(cams2[i], s2, r2)
            up1, up2 = _resize(rcam1, (h, w)), _resize(rcam2, (h, w))
            rcam3 = _unit(up1 * p1[i] + up2 * p2[i])
            final = crf_foreground(image, rcam3, self.p.crf_params) if self.p.crf else rcam3
            out[c] = {"cam1": _unit(_resize(cams1[i], (h, w))), "cam2": _unit(_resize(cams2[i], (h, w))),
                      "rcam1": _unit(up1), "rcam2": _unit(up2), "rcam3": rcam3, "rcam": final.astype(np.float32)}
        return out

    def box_maps(self, image: np.ndarray, boxes: list) -> dict[int, np.ndarray]:
        """rCAM_Box: rCAM of each box's crop (with margin), kept inside the box; max over boxes of a class."""
        h, w = image.shape[:2]
        out: dict[int, np.ndarray] = {}
        for b in boxes:
            x0, y0, x1, y1 = _crop(b, self.p.margin, h, w)
            crop = self.maps(image[y0:y1, x0:x1], [b.cls])[b.cls]["rcam"]
            full = out.setdefault(b.cls, np.zeros((h, w), np.float32))
            inside = crop[b.y0 - y0: b.y1 - y0, b.x0 - x0: b.x1 - x0]
            np.maximum(full[b.y0:b.y1, b.x0:b.x1], inside, out=full[b.y0:b.y1, b.x0:b.x1])
        return out


def shared_rcam(resources: Resources, p: RCamParams) -> RCam:
    """One RCam per process and parameter set (its layer search probes the network once)."""
    key = f"rcam:{p.scales}:{p.target_layer}:{p.guide_layer}:{p.guide_stride}"
    return resources.get(key, lambda: RCam(resources.classifier, p))


class RCamRefiner:
    """Masks stage ``rcam``: rCAM (scope image) or rCAM_Box (scope box) thresholded per class."""

    def __init__(self, params: RCamParams, resources: Resources) -> None:
        self.p = params
        self.rcam = shared_rcam(resources, params)

    def class_maps(self, rec: Record) -> dict[int, np.ndarray]:
        if self.p.scope == "box":
            return self.rcam.box_maps(rec.image, rec.boxes)
        cached = rec.cache.get("rcam_stages")
        stages = cached if cached is not None and set(cached) >= set(rec.classes) else self.rcam.maps(rec.image, rec.classes)
        rec.cache["rcam_stages"] = stages
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


class RCamStage:
    """CAM stage ``rcam``: rec.cams become the rCAMs (intermediate maps in rec.cache['rcam_stages'])."""

    def __init__(self, params: RCamParams, resources: Resources) -> None:
        self.rcam = shared_rcam(resources, params)

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        stages = self.rcam.maps(rec.image, rec.classes)
        rec.cache["rcam_stages"] = stages
        return {c: s["rcam"] for c, s in stages.items()}


CAM_METHODS.register("rcam", params=RCamParams)(RCamStage)
