"""The SAM mask refiners: ``sam_cam_match`` (paper 000) and ``sam_box`` (paper 003).

Both take the boxes of the boxes stage (CAM components, Grounding-DINO or given boxes), decode
all of an image's boxes in one SAM call and work at the image's native resolution.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from wsss.record import Record, Resources
from wsss.sam.engine import AutoMaskParams, SamModelParams, get_engine
from wsss.sam.selection import group_in_box, match_box_mask, prune_auto_masks
from wsss.utils.io import IGNORE_INDEX


@dataclasses.dataclass
class SamCamMatchParams:
    model: SamModelParams = dataclasses.field(default_factory=SamModelParams)
    auto: AutoMaskParams = dataclasses.field(default_factory=AutoMaskParams)
    min_iou: float = 0.1  # the best automatic mask replaces the box mask only above this IoU
    max_area: float = 0.8  # prune automatic masks covering more of the image than this
    border_sides: int = 3  # prune automatic masks touching this many image edges (0 = off)
    black_level: float = 20.0  # prune automatic masks whose mean intensity is below this (0 = off)
    overlap: Literal["score", "ignore"] = "score"


def _boxes_array(rec: Record) -> np.ndarray:
    return np.array([b.as_list() for b in rec.boxes], np.float32).reshape(-1, 4)


def _auto_stack(records: list[dict], shape: tuple[int, int]) -> np.ndarray:
    if not records:
        return np.zeros((0, *shape), bool)
    return np.stack([r["segmentation"] for r in records]).astype(bool)


class SamCamMatch:
    """Box-prompt mask per box, replaced by the best-matching automatic mask (paper 000)."""

    def __init__(self, params: SamCamMatchParams, resources: Resources) -> None:
        self.p = params
        self.engine = get_engine(params.model, resources, "masks.sam_cam_match.model.checkpoint")

    def class_masks(self, rec: Record) -> dict[int, np.ndarray]:
        shape = rec.image.shape[:2]
        masks: dict[int, np.ndarray] = {}
        if not rec.boxes:
            return masks
        box_masks, _ = self.engine.box_masks(rec, _boxes_array(rec), multimask=False)
        auto = _auto_stack(self.engine.auto_masks(rec, self.p.auto), shape)
        auto = auto[prune_auto_masks(auto, rec.image, self.p.max_area, self.p.border_sides, self.p.black_level)]
        matches = []
        for box, bm in zip(rec.boxes, box_masks[:, 0]):
            mask, iou, index = match_box_mask(bm, auto, self.p.min_iou)
            matches.append({"cls": box.cls, "iou": round(iou, 4), "auto_index": index})
            masks[box.cls] = masks.get(box.cls, np.zeros(shape, bool)) | mask
        rec.cache["sam_cam_match"] = matches
        return masks

    def __call__(self, rec: Record) -> np.ndarray:
        from wsss.masks.compose import compose_label_map  # here: wsss.masks imports this module to register it

        masks = self.class_masks(rec)
        shape = rec.image.shape[:2]
        best = {c: max(b.score for b in rec.boxes if b.cls == c) for c in masks}
        conf = {c: rec.cams.get(c, np.full(shape, best[c], np.float32)) for c in masks}
        return compose_label_map(shape, masks, conf, self.p.overlap)


@dataclasses.dataclass
class SamBoxParams:
    model: SamModelParams = dataclasses.field(default_factory=SamModelParams)
    auto: AutoMaskParams = dataclasses.field(default_factory=AutoMaskParams)
    use_auto_masks: bool = True  # candidates: the box's multimask outputs plus automatic masks in the box
    inside_frac: float = 0.8  # a candidate must lie this much inside the box
    add_ratio: float = 0.2  # a disjoint candidate filling this much of the box joins the object
    min_ratio: float = 0.05  # candidates filling less of the box are ignored
    min_score: float = 0.0  # boxes whose best mask scores below this (box score x predicted IoU) become 255
    uncertain: Literal["ignore", "background"] = "ignore"  # pixels only rejected candidates claim


class SamBox:
    """SAM inside each box with hierarchical grouping; overlaps between boxes resolved by score (paper 003)."""

    def __init__(self, params: SamBoxParams, resources: Resources) -> None:
        self.p = params
        self.engine = get_engine(params.model, resources, "masks.sam_box.model.checkpoint")

    def __call__(self, rec: Record) -> np.ndarray:
        shape = rec.image.shape[:2]
        label = np.zeros(shape, np.uint8)
        if not rec.boxes:
            return label
        multi, ious = self.engine.box_masks(rec, _boxes_array(rec), multimask=True)
        auto = np.zeros((0, *shape), bool)
        if self.p.use_auto_masks:
            auto = _auto_stack(self.engine.auto_masks(rec, self.p.auto), shape)
        uncertain = np.zeros(shape, bool)
        painted = []
        for box, cand, iou in zip(rec.boxes, multi, ious):
            mask, unsure, _ = group_in_box(np.concatenate([cand, auto]), box, self.p.inside_frac, self.p.add_ratio,
                                           self.p.min_ratio)
            score = float(box.score) * float(iou.max())
            if score < self.p.min_score:
                uncertain |= mask | unsure
                continue
            painted.append((score, box.cls, mask))
            uncertain |= unsure
        claimed = np.zeros(shape, bool)
        for _score, cls, mask in sorted(painted, key=lambda t: t[0]):  # higher score painted last, wins overlaps
            label[mask] = cls
            claimed |= mask
        if self.p.uncertain == "ignore":
            label[uncertain & ~claimed] = IGNORE_INDEX
        return label
