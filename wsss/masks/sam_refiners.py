"""The SAM mask refiners: ``sam_cam_match`` (paper 000) and ``sam_box`` (paper 003).

Both take the boxes of the boxes stage (CAM components, Grounding-DINO or given boxes), decode
all of an image's boxes in one SAM call and work at the image's native resolution.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from wsss.masks.base import Refiner, StageImage
from wsss.masks.compose import compose_label_map
from wsss.masks.sam_selection import candidate_quality, group_in_box, match_box_mask, prune_auto_masks
from wsss.record import Record, Resources
from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, get_engine
from wsss.utils.io import IGNORE_INDEX


@dataclasses.dataclass
class SamCamMatchParams:
    model: SamModelParams = dataclasses.field(default_factory=SamModelParams)
    auto: AutoMaskParams = dataclasses.field(default_factory=AutoMaskParams)
    min_iou: float = 0.1  # the best automatic mask replaces the box mask only above this IoU
    # a box mask under this many pixels is "small": cam-sam's demo then takes any overlapping automatic
    # mask (IoU > 0, "replace"); "keep" never replaces it; 0 = off
    min_box_mask_px: int = 100
    small_box_mask: Literal["replace", "keep"] = "replace"
    # pruning of the automatic masks, cam-sam's rules: keep min_area < area / image < max_area ...
    min_area: float = 0.01  # 0 = off
    max_area: float = 0.7  # >= 1 = off
    # ... and drop masks with >= max_dark_fraction dark pixels (every channel < dark_level; 0 = off)
    dark_level: float = 30.0
    max_dark_fraction: float = 0.5
    # wsss's older rules, off by default: frames touching this many image edges; mean intensity below this
    border_sides: int = 0
    black_level: float = 0.0
    overlap: Literal["score", "ignore"] = "score"
    # the automatic masks' point grid: "full" = all auto.points_per_side² points (paper 000); "boxes" = only the
    # grid points inside the image's boxes, each box grown by box_margin x its width / height on every side,
    # decoded in one call. The decoder is most of the cost, so this is faster by about the share of the image
    # the boxes leave out; agreement with "full" is measured in docs/sam.md ("Box grid")
    grid: Literal["full", "boxes"] = "full"
    box_margin: float = 0.1

    def __post_init__(self) -> None:
        if self.small_box_mask not in ("replace", "keep"):
            raise ValueError(f"small_box_mask is '{self.small_box_mask}'; choose 'replace' or 'keep'")
        if self.grid not in ("full", "boxes"):
            raise ValueError(f"grid is '{self.grid}'; choose 'full' or 'boxes'")
        if self.grid == "boxes" and self.auto.crop_n_layers > 0:
            raise ValueError("grid 'boxes' needs auto.crop_n_layers = 0 (zoomed crops have grids of their own)")

    def prune(self, auto: np.ndarray, image: np.ndarray) -> np.ndarray:
        """Indices of the automatic masks these parameters keep (``prune_auto_masks``)."""
        return prune_auto_masks(auto, image, self.max_area, self.border_sides, self.black_level,
                                min_area=self.min_area, dark_level=self.dark_level,
                                max_dark_fraction=self.max_dark_fraction)


MASK_THRESHOLD = 0.0  # SAM's and SAM 2's mask threshold on the decoder logits


def stability_scores(logits: np.ndarray, offset: float = 1.0, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """The libraries' stability score of each mask in logits (..., H, W): IoU of the masks thresholded at
    ``threshold + offset`` and ``threshold - offset`` (0 for a mask empty at both)."""
    flat = logits.reshape(*logits.shape[:-2], -1)
    inter = (flat > threshold + offset).sum(-1)
    union = (flat > threshold - offset).sum(-1)
    return inter / np.maximum(union, 1)


def _boxes_array(rec: Record) -> np.ndarray:
    return np.array([b.as_list() for b in rec.boxes], np.float32).reshape(-1, 4)


def _auto_stack(records: list[dict], shape: tuple[int, int]) -> np.ndarray:
    if not records:
        return np.zeros((0, *shape), bool)
    return np.stack([r["segmentation"] for r in records]).astype(bool)


class _SamRefiner(Refiner):
    """What both SAM refiners share: the process's engine, batched encoding, compilation, and bf16 for the
    image encoder only (``pseudo.autocast`` on CUDA reaches :meth:`prepare_batch`; the decoding in
    :meth:`__call__` runs in float32 on float32 embeddings, so masks and thresholds keep their precision)."""

    autocast_safe = True
    engine: SamEngine

    def prepare_batch(self, recs: Sequence[Record]) -> None:
        self.engine.encode_batch(recs)  # one encoder call per batch on CUDA; image by image on CPU

    def compile(self) -> None:
        self.engine.compile()

    def __call__(self, rec: Record) -> np.ndarray:
        with torch.autocast(self.engine.device.type, enabled=False):
            return self.label_map(rec)

    def label_map(self, rec: Record) -> np.ndarray:
        """HxW uint8 label map of ``rec`` (its embedding from :meth:`prepare_batch` or encoded here)."""
        raise NotImplementedError


class SamCamMatch(_SamRefiner):
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
        auto = _auto_stack(self.auto_records(rec), shape)
        kept = self.p.prune(auto, rec.image)
        matches = []
        for box, bm in zip(rec.boxes, box_masks[:, 0]):
            mask, iou, index = match_box_mask(bm, auto[kept], self.p.min_iou, self.p.min_box_mask_px,
                                              self.p.small_box_mask)
            index = int(kept[index]) if index >= 0 else -1  # into the engine's automatic masks, before pruning
            matches.append({"cls": box.cls, "iou": round(iou, 4), "auto_index": index, "box_px": int(bm.sum())})
            masks[box.cls] = masks.get(box.cls, np.zeros(shape, bool)) | mask
        rec.cache["sam_cam_match"] = matches
        rec.cache["sam_cam_match_views"] = [("SAM box masks", box_masks[:, 0]), ("SAM automatic masks (kept)", auto[kept])]
        return masks

    def auto_records(self, rec: Record) -> list[dict]:
        """The engine's automatic masks this refiner matches against (cached per image and grid)."""
        if self.p.grid == "boxes":  # only the grid points near the boxes: the masks that can match them
            return self.engine.auto_masks(rec, self.p.auto, boxes=_boxes_array(rec), box_margin=self.p.box_margin)
        return self.engine.auto_masks(rec, self.p.auto)

    def stage_images(self, rec: Record) -> list[StageImage]:
        return list(rec.cache.get("sam_cam_match_views", []))

    def label_map(self, rec: Record) -> np.ndarray:
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
    # ranking: score = ratio * quality * (1 - box_penalty * box_shaped), see selection.group_in_box;
    # quality = predicted_iou ** iou_weight * stability ** stability_weight (0 = ignore that term)
    iou_weight: float = 1.0
    stability_weight: float = 1.0
    # box_shaped: |m| / |bbox(m)| >= box_rect and IoU(bbox(m), box) >= box_iou (the mask fills the box)
    box_rect: float = 0.9
    box_iou: float = 0.9
    box_penalty: float = 0.75  # 0 = off; with iou_weight = stability_weight = 0 it is paper 003's ratio alone
    min_score: float = 0.0  # boxes whose best mask scores below this (box score x predicted IoU) become 255
    uncertain: Literal["ignore", "background"] = "ignore"  # pixels only rejected candidates claim


class SamBox(_SamRefiner):
    """SAM inside each box with hierarchical grouping; overlaps between boxes resolved by score (paper 003)."""

    def __init__(self, params: SamBoxParams, resources: Resources) -> None:
        self.p = params
        self.engine = get_engine(params.model, resources, "masks.sam_box.model.checkpoint")

    def stage_images(self, rec: Record) -> list[StageImage]:
        return list(rec.cache.get("sam_box_views", []))

    def _quality(self, pred_iou: np.ndarray, stability: np.ndarray) -> np.ndarray:
        return candidate_quality(pred_iou, stability, self.p.iou_weight, self.p.stability_weight)

    def label_map(self, rec: Record) -> np.ndarray:
        shape = rec.image.shape[:2]
        label = np.zeros(shape, np.uint8)
        if not rec.boxes:
            return label
        logits, ious = self.engine.box_masks(rec, _boxes_array(rec), multimask=True, logits=True)
        multi = logits > MASK_THRESHOLD
        multi_stab = stability_scores(logits, self.p.auto.stability_score_offset)
        records = self.engine.auto_masks(rec, self.p.auto) if self.p.use_auto_masks else []
        auto = _auto_stack(records, shape)
        rec.cache["sam_box_views"] = [("SAM multimask candidates", multi.reshape(-1, *shape))] + (
            [("SAM automatic masks", auto)] if len(auto) else [])
        auto_q = self._quality(np.array([r["predicted_iou"] for r in records]),
                               np.array([r["stability_score"] for r in records]))
        uncertain = np.zeros(shape, bool)
        painted = []
        for box, cand, iou, stab in zip(rec.boxes, multi, ious, multi_stab):
            quality = np.concatenate([self._quality(iou, stab), auto_q])
            mask, unsure, _ = group_in_box(np.concatenate([cand, auto]), box, self.p.inside_frac, self.p.add_ratio,
                                           self.p.min_ratio, quality=quality, box_rect=self.p.box_rect,
                                           box_iou=self.p.box_iou, box_penalty=self.p.box_penalty)
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
