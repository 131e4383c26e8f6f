"""The mask-choice rules of papers 000 and 003 on constructed masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.data.base import Box, Sample
from wsss.masks.sam_refiners import SamBox, SamBoxParams, SamCamMatch, SamCamMatchParams, stability_scores
from wsss.masks.sam_selection import (
    box_shaped,
    candidate_quality,
    candidate_scores,
    dark_fraction,
    group_in_box,
    iou_matrix,
    match_box_mask,
    prune_auto_masks,
)
from wsss.record import Record, Resources
from wsss.sam.engine import AutoMaskParams, SamModelParams, sam_resource_key


def rect(shape: tuple[int, int], y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= r * r


def brute_iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def test_iou_matrix_matches_pairwise_iou() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 20, 24)) > 0.5, rng.random((4, 20, 24)) > 0.7
    m = iou_matrix(a, b)
    assert m.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert m[i, j] == pytest.approx(brute_iou(a[i], b[j]), abs=1e-6)


# -- paper 000: matching -------------------------------------------------------------------------------
def test_match_picks_best_auto_mask_above_threshold() -> None:
    shape = (40, 40)
    box_mask = rect(shape, 10, 10, 30, 30)
    auto = np.stack([rect(shape, 0, 0, 8, 8), rect(shape, 12, 12, 30, 30), rect(shape, 5, 5, 35, 35)])
    mask, iou, index = match_box_mask(box_mask, auto, 0.1)
    expected = int(np.argmax([brute_iou(box_mask, m) for m in auto]))
    assert index == expected
    assert np.array_equal(mask, auto[expected])
    assert iou == pytest.approx(brute_iou(box_mask, auto[expected]), abs=1e-6)


@pytest.mark.parametrize("auto_count", [0, 1, 3])
def test_match_falls_back_to_box_mask(auto_count: int) -> None:
    shape = (40, 40)
    box_mask = rect(shape, 10, 10, 30, 30)
    # each automatic mask touches the box mask in one pixel only: IoU far below 0.1
    auto = np.stack([rect(shape, 29, 29 - i, 40, 40 - i) & ~rect(shape, 30, 0, 40, 40) | rect(shape, 35, 0, 40, 40)
                     for i in range(auto_count)]) if auto_count else np.zeros((0, *shape), bool)
    mask, iou, index = match_box_mask(box_mask, auto, 0.1)
    assert index == -1
    assert np.array_equal(mask, box_mask)
    assert iou <= 0.1


# box mask at (10, 10) of h x w px inside one automatic mask of H x W px at (0, 0): IoU = hw / HW
SMALL, LARGE = (9, 10), (10, 20)  # 90 px and 200 px box masks


@pytest.mark.parametrize("box_hw,auto_hw,mode,min_px,replaced", [
    (SMALL, (30, 20), "keep", 100, False),  # IoU 0.15 > min_iou, yet a small box mask is kept
    (SMALL, (30, 20), "replace", 100, True),
    (SMALL, (45, 40), "replace", 100, True),  # IoU 0.05 < min_iou: cam-sam's demo still takes the automatic mask
    (SMALL, (45, 40), "keep", 100, False),
    (SMALL, (45, 40), "replace", 0, False),  # the small-mask rule off: the IoU rule alone
    (LARGE, (30, 40), "keep", 100, True),  # 200 px is not small: IoU 0.167 > min_iou replaces it in both modes
    (LARGE, (30, 40), "replace", 100, True),
    (LARGE, (50, 80), "replace", 100, False),  # IoU 0.05: kept in both modes
    (LARGE, (50, 80), "keep", 100, False),
])
def test_small_box_mask_rule(box_hw: tuple[int, int], auto_hw: tuple[int, int], mode: str, min_px: int,
                             replaced: bool) -> None:
    shape = (64, 96)
    box_mask = rect(shape, 10, 10, 10 + box_hw[0], 10 + box_hw[1])
    auto = np.stack([rect(shape, 0, 0, *auto_hw), rect(shape, 60, 90, 64, 96)])  # the second one is disjoint
    mask, iou, index = match_box_mask(box_mask, auto, 0.1, min_box_mask_px=min_px, small_box_mask=mode)
    assert iou == pytest.approx(box_hw[0] * box_hw[1] / (auto_hw[0] * auto_hw[1]), abs=1e-6)
    assert (index == 0) == replaced
    assert np.array_equal(mask, auto[0] if replaced else box_mask)


def test_small_box_mask_without_any_overlap_keeps_box_mask() -> None:
    shape = (40, 40)
    box_mask = rect(shape, 0, 0, 5, 5)
    mask, iou, index = match_box_mask(box_mask, rect(shape, 20, 20, 40, 40)[None], 0.1)
    assert index == -1 and iou == 0 and np.array_equal(mask, box_mask)
    with pytest.raises(ValueError, match="small_box_mask"):
        match_box_mask(box_mask, box_mask[None], small_box_mask="always")  # type: ignore[arg-type]


# -- paper 000: pruning --------------------------------------------------------------------------------
@pytest.mark.parametrize("area_px,kept", [(50, False), (100, False), (101, True), (5000, True), (6999, True),
                                          (7000, False), (7500, False)])
def test_prune_keeps_masks_between_1_and_70_percent(area_px: int, kept: bool) -> None:
    shape = (100, 100)  # 1 % = 100 px, 70 % = 7000 px, both bounds strict as in cam-sam
    image = np.full((*shape, 3), 120, np.uint8)
    mask = np.zeros(shape[0] * shape[1], bool)
    mask[:area_px] = True
    assert (prune_auto_masks(mask.reshape(shape)[None], image).tolist() == [0]) == kept
    assert prune_auto_masks(mask.reshape(shape)[None], image, max_area=1.0, min_area=0).tolist() == [0]  # both off


@pytest.mark.parametrize("dark_pct,kept", [(0, True), (40, True), (49, True), (50, False), (60, False), (100, False)])
def test_prune_drops_masks_half_dark(dark_pct: int, kept: bool) -> None:
    shape = (40, 50)
    image = np.full((*shape, 3), 120, np.uint8)
    mask = rect(shape, 0, 0, 10, 50)  # the first 500 px = 25 % of the image: the area rule keeps it
    image.reshape(-1, 3)[:dark_pct * 5] = 29  # dark_pct % of the mask's pixels: every channel below 30
    assert dark_fraction(mask[None], image)[0] == pytest.approx(dark_pct / 100)
    assert (prune_auto_masks(mask[None], image).tolist() == [0]) == kept
    assert prune_auto_masks(mask[None], image, dark_level=0).tolist() == [0]  # the rule off


@pytest.mark.parametrize("pixel,dark", [((29, 29, 29), True), ((30, 30, 30), False), ((0, 0, 40), False),
                                        ((10, 10, 200), False)])
def test_dark_pixel_has_every_channel_below_level(pixel: tuple[int, int, int], dark: bool) -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[:] = pixel
    assert dark_fraction(np.ones((1, 4, 4), bool), image, 30)[0] == (1.0 if dark else 0.0)


def test_prune_old_rules_are_options_off_by_default() -> None:
    shape = (40, 40)
    image = np.full((*shape, 3), 120, np.uint8)
    image[:, :3] = 60  # a dim strip on the left: mean 60, not dark by cam-sam's rule
    frame = rect(shape, 0, 0, 40, 40) & ~rect(shape, 2, 2, 38, 38)  # touches all 4 edges, 19 % of the image
    dim = rect(shape, 5, 0, 30, 3)
    obj = rect(shape, 10, 10, 25, 25)
    masks = np.stack([frame, dim, obj])
    assert prune_auto_masks(masks, image).tolist() == [0, 1, 2]
    assert prune_auto_masks(masks, image, border_sides=3).tolist() == [1, 2]
    assert prune_auto_masks(masks, image, black_level=80).tolist() == [0, 2]
    assert prune_auto_masks(masks, image, 0.8, 3, 80).tolist() == [2]  # the old positional order still holds


# -- paper 003: grouping -------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]])
def test_grouping_prefers_whole_object_over_parts(order: list[int]) -> None:
    shape = (50, 50)
    box = Box(1, 10, 10, 40, 40)
    whole = rect(shape, 11, 11, 39, 39)
    head = rect(shape, 11, 11, 20, 39)  # a part of the whole
    leg = rect(shape, 30, 12, 39, 18)  # another part
    outside = rect(shape, 0, 0, 50, 50)  # mostly outside the box: not a candidate
    cands = np.stack([whole, head, leg, outside])[order]
    chosen, uncertain, ratio = group_in_box(cands, box)
    assert np.array_equal(chosen, whole)
    assert not uncertain.any()  # parts lie inside the chosen object
    assert ratio[order.index(0)] == pytest.approx(whole.sum() / 900)


def test_grouping_joins_disjoint_pieces_and_flags_uncertain_pixels() -> None:
    shape = (50, 50)
    box = Box(2, 0, 0, 40, 20)
    left = rect(shape, 0, 0, 20, 18)  # an object split by an occluder
    right = rect(shape, 0, 22, 20, 40)
    straddle = rect(shape, 5, 10, 15, 30)  # overlaps both halves and the gap: ambiguous
    chosen, uncertain, _ = group_in_box(np.stack([straddle, right, left]), box, add_ratio=0.2)
    assert np.array_equal(chosen, left | right)
    assert np.array_equal(uncertain, straddle & ~(left | right))
    # a small disjoint piece below add_ratio stays out and becomes uncertain
    chosen, uncertain, _ = group_in_box(np.stack([left, rect(shape, 0, 30, 10, 36)]), box, add_ratio=0.2)
    assert np.array_equal(chosen, left)
    assert uncertain.sum() == 60


SHAPE, BOX = (60, 60), Box(1, 10, 10, 50, 50)  # a 40 x 40 box
FILLER = rect(SHAPE, 10, 10, 50, 50)  # what SAM returns when it segments the box itself: ratio 1.0
DISC = disc(SHAPE, 30, 30, 15.8)  # the object: fills about half of the box (0.4925)


def test_constructed_cases_have_the_stated_ratios() -> None:
    ratio, _ = candidate_scores(np.stack([FILLER, DISC]), BOX)
    assert ratio[0] == 1.0 and ratio[1] == pytest.approx(0.496, abs=0.005)


@pytest.mark.parametrize("box_penalty,winner", [(0.75, "disc"), (0.0, "filler")])
@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_box_filling_candidate_loses_to_object_inside(box_penalty: float, winner: str, order: list[int]) -> None:
    cands = np.stack([FILLER, DISC])[order]
    chosen, uncertain, _ = group_in_box(cands, BOX, box_penalty=box_penalty)
    assert np.array_equal(chosen, DISC if winner == "disc" else FILLER)
    if winner == "disc":  # the filler's other pixels are claimed by a rejected candidate only
        assert np.array_equal(uncertain, FILLER & ~DISC)


@pytest.mark.parametrize("box_penalty,winner", [(0.75, "disc"), (0.0, "filler")])
def test_box_shaped_candidate_with_higher_predicted_iou(box_penalty: float, winner: str) -> None:
    quality = candidate_quality(np.array([0.95, 0.80]), np.array([0.97, 0.95]))  # the filler is more confident
    chosen, _, _ = group_in_box(np.stack([FILLER, DISC]), BOX, quality=quality, box_penalty=box_penalty)
    assert np.array_equal(chosen, DISC if winner == "disc" else FILLER)


@pytest.mark.parametrize("iou_weight,winner", [(1.0, "part"), (0.0, "whole")])
def test_predicted_iou_enters_the_ranking(iou_weight: float, winner: str) -> None:
    shape, box = (50, 50), Box(1, 10, 10, 40, 40)
    whole = disc(shape, 25, 25, 14)  # 0.68 of the box, but SAM doubts it
    part = disc(shape, 25, 20, 8)  # 0.22 of the box, confidently predicted
    quality = candidate_quality(np.array([0.2, 0.95]), np.array([0.9, 0.9]), iou_weight=iou_weight)
    chosen, _, _ = group_in_box(np.stack([whole, part]), box, quality=quality)
    assert np.array_equal(chosen, (part if winner == "part" else whole) & rect(shape, 10, 10, 40, 40))


def test_stability_enters_the_ranking() -> None:
    quality = candidate_quality(np.array([0.9, 0.9]), np.array([1.0, 0.1]))
    _, score = candidate_scores(np.stack([FILLER & ~rect(SHAPE, 10, 10, 30, 50), DISC]), BOX, quality)
    assert score[0] > score[1]  # an unstable disc loses to half of the box (not box-shaped)
    assert candidate_quality(np.array([-0.2, np.nan, 1.3]), np.array([0.5, 0.5, 2.0])).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("mask,shaped", [
    (FILLER, True),
    (FILLER & ~rect(SHAPE, 10, 10, 14, 14) & ~rect(SHAPE, 46, 46, 50, 50), True),  # corners cut: rect 0.98
    (rect(SHAPE, 12, 12, 48, 48), False),  # bbox IoU 0.81
    (rect(SHAPE, 11, 11, 49, 49), True),  # bbox IoU 0.9025
    (rect(SHAPE, 10, 10, 50, 30), False),  # half the box: bbox IoU 0.5
    (DISC, False),  # rectangularity ~0.78
    (disc(SHAPE, 30, 30, 21), False),  # a disc spilling over the box, clipped to it: bbox = box, rect 0.87
])
def test_box_shaped_needs_rectangular_mask_and_bbox_like_the_box(mask: np.ndarray, shaped: bool) -> None:
    clipped = mask & rect(SHAPE, 10, 10, 50, 50)
    assert box_shaped(clipped[None], BOX)[0] == shaped


def test_whole_rectangular_object_slightly_inside_box_is_not_penalised() -> None:
    """The existing whole-vs-parts case: a 28 x 28 object in a 30 x 30 box has bbox IoU 0.87 < box_iou 0.9."""
    shape, box = (50, 50), Box(1, 10, 10, 40, 40)
    assert not box_shaped(rect(shape, 11, 11, 39, 39)[None], box)[0]
    assert box_shaped(rect(shape, 11, 11, 39, 39)[None], box, box_iou=0.85)[0]


# -- the refiners wire the rules: an engine returning constructed masks --------------------------------
class FakeEngine:
    device = torch.device("cpu")

    def __init__(self, box_logits: np.ndarray, box_ious: np.ndarray, auto: list[dict]) -> None:
        self.box_logits, self.box_ious, self.auto = box_logits, box_ious, auto

    def box_masks(self, rec: Record, boxes: np.ndarray, multimask: bool, logits: bool = False):
        out = self.box_logits if multimask else self.box_logits[:, :1]
        ious = self.box_ious if multimask else self.box_ious[:, :1]
        return (out if logits else out > 0), ious

    def auto_masks(self, rec: Record, p: AutoMaskParams, **grid) -> list[dict]:
        self.grid = grid  # what the refiner asked for: {} (full grid) or boxes and box_margin
        return self.auto


def fake_resources(engine: FakeEngine, tmp_path: Path) -> tuple[Resources, SamModelParams]:
    mp = SamModelParams(checkpoint=str(tmp_path / "unused.pt"))
    res = Resources(None, ["background", "a"], tmp_path, torch.device("cpu"))
    res.get(sam_resource_key(mp), lambda: engine)
    return res, mp


def as_logits(masks: list[np.ndarray], margin: float = 4.0) -> np.ndarray:
    """Logits ±margin: every mask perfectly stable at offset 1."""
    return np.where(np.stack(masks), margin, -margin).astype(np.float32)[None]


def record(shape: tuple[int, int], box: Box, image: np.ndarray | None = None) -> Record:
    rec = Record(Sample("img", np.full((*shape, 3), 120, np.uint8) if image is None else image))
    rec.classes, rec.boxes = [box.cls], [box]
    return rec


@pytest.mark.parametrize("box_penalty,winner", [(0.75, "disc"), (0.0, "filler")])
def test_sam_box_ranks_multimask_outputs_with_penalty(box_penalty: float, winner: str, tmp_path: Path) -> None:
    part = disc(SHAPE, 30, 30, 6)
    engine = FakeEngine(as_logits([FILLER, DISC, part]), np.array([[0.95, 0.80, 0.7]], np.float32), [])
    res, mp = fake_resources(engine, tmp_path)
    stage = SamBox(SamBoxParams(model=mp, use_auto_masks=False, box_penalty=box_penalty), res)
    label = stage(record(SHAPE, BOX))
    assert np.array_equal(label == 1, DISC if winner == "disc" else FILLER)


def test_sam_box_uses_stability_of_box_outputs(tmp_path: Path) -> None:
    """Two disc-like outputs: the larger one's logits hover at the threshold (unstable), so the stable one wins."""
    big, small = disc(SHAPE, 30, 30, 17), disc(SHAPE, 30, 30, 14)
    logits = as_logits([big, small, small])
    logits[0, 0][big] = 0.5  # inside the mask but below threshold + offset: stability 0
    engine = FakeEngine(logits, np.array([[0.9, 0.9, 0.9]], np.float32), [])
    res, mp = fake_resources(engine, tmp_path)
    assert stability_scores(logits)[0].tolist() == [0.0, 1.0, 1.0]
    label = SamBox(SamBoxParams(model=mp, use_auto_masks=False), res)(record(SHAPE, BOX))
    assert np.array_equal(label == 1, small)
    label = SamBox(SamBoxParams(model=mp, use_auto_masks=False, stability_weight=0), res)(record(SHAPE, BOX))
    assert np.array_equal(label == 1, big)


def test_sam_box_ranks_automatic_masks_by_their_scores(tmp_path: Path) -> None:
    auto = [{"segmentation": DISC, "predicted_iou": 0.9, "stability_score": 0.95},
            {"segmentation": disc(SHAPE, 30, 30, 18), "predicted_iou": 0.9, "stability_score": 0.2}]
    engine = FakeEngine(as_logits([FILLER, FILLER, FILLER]), np.array([[0.99, 0.99, 0.99]], np.float32), auto)
    res, mp = fake_resources(engine, tmp_path)
    label = SamBox(SamBoxParams(model=mp), res)(record(SHAPE, BOX))
    assert np.array_equal(label == 1, DISC)


def test_sam_cam_match_prunes_with_params_and_indexes_unpruned_list(tmp_path: Path) -> None:
    shape = (40, 40)
    box = Box(1, 8, 8, 32, 32, 0.9)
    box_mask = rect(shape, 10, 10, 30, 30)
    image = np.full((*shape, 3), 120, np.uint8)
    image[:20] = 10  # the top half is dark
    speck = rect(shape, 10, 10, 13, 13)  # 9 px < 1 %: pruned
    dark = rect(shape, 8, 8, 30, 30)  # best IoU, but 55 % dark: pruned
    good = rect(shape, 12, 12, 30, 30)
    auto = [{"segmentation": m, "predicted_iou": 0.9, "stability_score": 0.9} for m in (speck, dark, good)]
    res, mp = fake_resources(FakeEngine(as_logits([box_mask]), np.array([[0.9]], np.float32), auto), tmp_path)
    rec = record(shape, box, image)
    masks = SamCamMatch(SamCamMatchParams(model=mp), res).class_masks(rec)
    assert rec.cache["sam_cam_match"][0]["auto_index"] == 2  # into the engine's list, before pruning
    assert np.array_equal(masks[1], good)
    rec = record(shape, box, image)
    masks = SamCamMatch(SamCamMatchParams(model=mp, dark_level=0), res).class_masks(rec)
    assert rec.cache["sam_cam_match"][0]["auto_index"] == 1 and np.array_equal(masks[1], dark)
    with pytest.raises(ValueError, match="small_box_mask"):
        SamCamMatchParams(small_box_mask="never")  # type: ignore[arg-type]


@pytest.mark.parametrize("grid,margin", [("full", 0.1), ("boxes", 0.1), ("boxes", 0.0)])
def test_sam_cam_match_grid_asks_engine_for_box_points(grid: str, margin: float, tmp_path: Path) -> None:
    shape = (40, 40)
    box = Box(1, 8, 8, 32, 32, 0.9)
    good = rect(shape, 12, 12, 30, 30)
    engine = FakeEngine(as_logits([rect(shape, 10, 10, 30, 30)]), np.array([[0.9]], np.float32),
                        [{"segmentation": good, "predicted_iou": 0.9, "stability_score": 0.9}])
    res, mp = fake_resources(engine, tmp_path)
    masks = SamCamMatch(SamCamMatchParams(model=mp, grid=grid, box_margin=margin), res).class_masks(record(shape, box))
    assert np.array_equal(masks[1], good)
    if grid == "full":
        assert engine.grid == {}
    else:
        assert engine.grid["box_margin"] == margin and engine.grid["boxes"].tolist() == [[8, 8, 32, 32]]
    assert SamCamMatchParams().grid == "full"  # the default stays paper 000's full grid
    with pytest.raises(ValueError, match="grid"):
        SamCamMatchParams(grid="box")  # type: ignore[arg-type]


# -- the engine's logits for box prompts (stability of multimask outputs) ------------------------------
@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_engine_box_logits_threshold_to_box_masks(family: str) -> None:
    from segment_anything.utils.amg import calculate_stability_score

    from wsss.models.tiny import build_tiny_sam, build_tiny_sam2
    from wsss.sam.engine import SamEngine

    engine = SamEngine(build_tiny_sam() if family == "sam" else build_tiny_sam2(), family)
    rng = np.random.default_rng(0)
    rec = Record(Sample("img", (rng.random((48, 64, 3)) * 255).astype(np.uint8)))
    boxes = np.array([[14, 10, 46, 38], [2, 2, 20, 20]], np.float32)
    masks, ious = engine.box_masks(rec, boxes, multimask=True)
    logits, ious_l = engine.box_masks(rec, boxes, multimask=True, logits=True)
    assert logits.dtype == np.float32 and np.array_equal(logits > 0, masks)
    assert np.allclose(ious, ious_l)
    ref = calculate_stability_score(torch.from_numpy(logits), 0.0, 1.0).numpy()
    assert np.allclose(np.nan_to_num(ref), stability_scores(logits, 1.0))
