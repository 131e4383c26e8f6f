"""rCAM (paper 002): high-resolution CAMs from two input scales, shape guides and a dense CRF.

Per class c of an image:
  1. CAM_k and the class probability P_k(c) at input scales s_1 < s_2 (224 and 448 by default);
     the CAM is Grad-CAM on the classifier's target layer, which is the CAM of Zhou et al. for a
     GAP + linear head, at the layer's native resolution.
  2. Shape guides S_k: the first 3 principal components of all stride-8 response maps, i.e. the
     outputs of every stride-8 block concatenated along channels (``find_guide_layers``); paper
     002 gathers all of GoogLeNet's 28x28 maps for a 224 input.
  3. rCAM_1 = GF(U(GF(U(CAM_1), S_1)), S_2), rCAM_2 = GF(U(CAM_2), S_2): guided-filter upsampling,
     each window radius the sigma of a Gaussian variogram fitted to its guide. U resizes to the
     guide's size (x2 for GoogLeNet's stride-16 CAM, x4 for a stride-32 CAM).
  4. rCAM_3 = rCAM_1 * P_1(c) + rCAM_2 * P_2(c) (eq. 5), normalised to [0, 1]. The paper fuses for
     its top-1 class of I_1; here each target class c uses its own probabilities.
  5. rCAM = P(foreground) of a dense CRF on (1 - rCAM_3, rCAM_3).
rCAM_Box (scope ``box``) runs the same on each box's crop and keeps what lies inside the box.

This module is the CAM method (``cam.name: rcam``); the refiner that thresholds it into a label map is
:mod:`wsss.masks.rcam`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from wsss.cam.base import CamMethod
from wsss.cam.crf import CrfParams, crf_foreground
from wsss.cam.guided_filter import guided_filter, variogram_radius
from wsss.classifier import get_classifier
from wsss.models.layers import find_guide_layers, resolve_target_layer
from wsss.record import Record, Resources

STAGES = ("cam1", "cam2", "rcam1", "rcam2", "rcam3", "rcam")


@dataclasses.dataclass
class RCamParams:
    scales: list[int] = dataclasses.field(default_factory=lambda: [224, 448])
    target_layer: str | None = None  # CAM layer; null = the classifier's
    # shape-guide layer(s), concatenated along channels; null = every stride-`guide_stride` block (paper 002)
    guide_layer: str | list[str] | None = None
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
        if self.radius is not None and self.radius < 0:
            raise ValueError(f"rcam.radius must be >= 0 or null (fitted per guide), got {self.radius}")
        if isinstance(self.guide_layer, list) and not self.guide_layer:
            raise ValueError("rcam.guide_layer: give a module name, a non-empty list of names, or null")


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


def stack_guide_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """``(C_i, h_i, w_i)`` maps -> one ``(sum C_i, h, w)`` tensor at the first map's size.

    Modules at one stride can differ by a pixel ('same' vs 'valid' padding); those are resized.
    """
    h, w = maps[0].shape[-2:]
    same = [m if m.shape[-2:] == (h, w) else F.interpolate(m[None].float(), (h, w), mode="bilinear",
                                                           align_corners=False)[0] for m in maps]
    return torch.cat([m.float() for m in same], 0)


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
        name = p.target_layer or classifier.target_layer
        self.cam_layer, self.reshape, _ = resolve_target_layer(model, name, probe)
        if p.guide_layer is None:
            self.guide_layers = find_guide_layers(model, probe, p.guide_stride)
        else:
            self.guide_layers = [p.guide_layer] if isinstance(p.guide_layer, str) else list(p.guide_layer)
        for g in self.guide_layers:
            try:
                model.get_submodule(g)
            except AttributeError:
                raise ValueError(f"rcam.guide_layer '{g}' is not a submodule of {type(model).__name__}") from None

    def scale(self, image: np.ndarray, classes: list[int], size: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """``(CAMs, P(c), S)`` at one input size: each class's CAM in [0, 1] at the CAM layer's native
        resolution, each class's probability, and the ``(h, w, 3)`` PCA shape guide."""
        model = self.clf.model
        store: dict[str, torch.Tensor] = {}
        guides: dict[str, torch.Tensor] = {}
        transform: Callable = self.reshape or (lambda t: t)

        def keep_cam(_m: object, _i: object, o: torch.Tensor) -> None:
            o.retain_grad()
            store["cam"] = o

        def keep_guide(_m: object, _i: object, o: torch.Tensor, name: str) -> None:
            if name not in guides:  # a shared module: its first call; cloned against later in-place ops
                if not torch.is_tensor(o) or o.dim() != 4:
                    raise ValueError(f"rcam.guide_layer '{name}' outputs {type(o).__name__}, not an NCHW map")
                guides[name] = o[0].detach().clone()

        hooks = [model.get_submodule(self.cam_layer).register_forward_hook(keep_cam)]
        hooks += [model.get_submodule(g).register_forward_hook(lambda _m, _i, o, g=g: keep_guide(_m, _i, o, g))
                  for g in self.guide_layers]
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
        pc = np.array([self.clf.class_probability(probs[i], c) for i, c in enumerate(classes)])  # P_k(c), as labels use it
        guide = pca_guide(stack_guide_maps([guides[g].cpu() for g in self.guide_layers]))
        return [_unit(m) for m in cams], pc, guide

    def radius(self, guide: np.ndarray) -> int:
        """The guided filter's window radius for ``guide``: ``params.radius`` or the fitted variogram sigma."""
        return self.p.radius if self.p.radius is not None else variogram_radius(guide)

    def upsample(self, cam: np.ndarray, guide: np.ndarray, radius: int) -> np.ndarray:
        """``GF(U(cam), guide)``: bilinear resize to the guide's size, then the guided filter; in [0, 1]."""
        return _unit(guided_filter(guide, _resize(cam, guide.shape[:2]), radius, self.p.eps))

    def maps(self, image: np.ndarray, classes: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """``{class: {stage: HxW map in [0, 1]}}`` for the stages CAM_1, CAM_2, rCAM_1..3 and rCAM."""
        if not classes:
            return {}
        h, w = image.shape[:2]
        cams1, p1, s1 = self.scale(image, classes, self.p.scales[0])
        cams2, p2, s2 = self.scale(image, classes, self.p.scales[1])
        r1, r2 = self.radius(s1), self.radius(s2)  # one radius per guide (paper 002: sigma of its variogram)
        out: dict[int, dict[str, np.ndarray]] = {}
        for i, c in enumerate(classes):
            rcam1 = _unit(_resize(self.upsample(self.upsample(cams1[i], s1, r1), s2, r2), (h, w)))  # eqs. 2-3
            rcam2 = _unit(_resize(self.upsample(cams2[i], s2, r2), (h, w)))  # eq. 4
            rcam3 = _unit(rcam1 * p1[i] + rcam2 * p2[i])  # eq. 5, on the very maps reported as rCAM_1, rCAM_2
            final = crf_foreground(image, rcam3, self.p.crf_params) if self.p.crf else rcam3
            out[c] = {"cam1": _unit(_resize(cams1[i], (h, w))), "cam2": _unit(_resize(cams2[i], (h, w))),
                      "rcam1": rcam1, "rcam2": rcam2, "rcam3": rcam3, "rcam": final.astype(np.float32)}
        return out

    def box_maps(self, image: np.ndarray, boxes: list) -> dict[int, np.ndarray]:
        """rCAM_Box: rCAM of each box's crop (with margin), kept inside the box; max over boxes of a class."""
        h, w = image.shape[:2]
        out: dict[int, np.ndarray] = {}
        for b in boxes:
            x0, y0, x1, y1 = b.with_margin(self.p.margin, h, w)
            crop = self.maps(image[y0:y1, x0:x1], [b.cls])[b.cls]["rcam"]
            full = out.setdefault(b.cls, np.zeros((h, w), np.float32))
            inside = crop[b.y0 - y0: b.y1 - y0, b.x0 - x0: b.x1 - x0]
            np.maximum(full[b.y0:b.y1, b.x0:b.x1], inside, out=full[b.y0:b.y1, b.x0:b.x1])
        return out


def shared_rcam(resources: Resources, p: RCamParams) -> RCam:
    """One RCam per process and parameter set (its layer search probes the network once)."""
    key = f"rcam:{p.scales}:{p.target_layer}:{p.guide_layer}:{p.guide_stride}:{p.radius}:{p.eps}:{p.crf}:{p.crf_params}"
    return resources.get(key, lambda: RCam(get_classifier(resources), p))


class RCamStage(CamMethod):
    """CAM stage ``rcam``: rec.cams become the rCAMs (intermediate maps in rec.cache['rcam_stages'])."""

    def __init__(self, params: RCamParams, resources: Resources) -> None:
        self.rcam = shared_rcam(resources, params)

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        stages = self.rcam.maps(rec.image, rec.classes)
        rec.cache["rcam_stages"], rec.cache["rcam_by"] = stages, self.rcam
        return {c: s["rcam"] for c, s in stages.items()}

