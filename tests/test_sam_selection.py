"""The mask-choice rules of papers 000 and 003 on constructed masks."""
from __future__ import annotations

import numpy as np
import pytest

from wsss.record import Box
from wsss.sam.selection import group_in_box, iou_matrix, match_box_mask, prune_auto_masks


def rect(shape: tuple[int, int], y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


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


def test_prune_drops_big_frame_and_black_masks() -> None:
    shape = (40, 40)
    image = np.full((*shape, 3), 120, np.uint8)
    image[:, :3] = 0  # a black frame strip on the left
    big = rect(shape, 0, 0, 40, 38)
    frame = rect(shape, 0, 0, 40, 40) & ~rect(shape, 2, 2, 38, 38)
    black = rect(shape, 5, 0, 30, 3)
    obj = rect(shape, 10, 10, 25, 25)
    masks = np.stack([big, frame, black, obj])
    assert prune_auto_masks(masks, image, max_area=0.8, border_sides=3, black_level=20).tolist() == [3]
    # each rule switched off lets its mask through
    assert 2 in prune_auto_masks(masks, image, max_area=0.8, border_sides=3, black_level=0)
    assert 0 in prune_auto_masks(masks, image, max_area=1.0, border_sides=0, black_level=20)


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
