"""GrabCut-CAM variants, naked GrabCut on boxes, CAM-alone, and paper 001's binary class metrics."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsss.data.base import Box, Sample
from wsss.experiments.sweep import BINARY_ACC_TITLE, BinaryClassMeter, SweepResult, format_best_table, gt_boxes
from wsss.masks import REFINERS
from wsss.masks.cam_threshold import CamThreshold, CamThresholdParams
from wsss.masks.grabcut_box import GrabCutBox, GrabCutBoxParams
from wsss.masks.grabcut_cam import GrabCutCam, GrabCutCamParams, cam_to_grabcut_mask, variant_thresholds
from wsss.record import Record


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    gt = np.zeros((64, 64), bool)
    cv2.circle(image, (32, 30), 14, (220, 200, 40), -1)
    cv2.circle(gt.view(np.uint8), (32, 30), 14, 1, -1)
    cam = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 6)  # a blurry CAM peaking on the object
    return image, gt, cam / cam.max()


BG, PR_BG, PR_FG, FG = cv2.GC_BGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD, cv2.GC_FGD


# Paper 001, sec. 4.3 and 5.1, written out per variant as (upper end of the band, code) with
# delta = 0.01: [0, t0) definite bg, [t0, t1) probable bg, [t1, t2) probable fg, [t2, 1] definite fg.
@pytest.mark.parametrize("variant,t,custom,thresholds,bands", [
    ("PF-PB", 0.3, None, (0.0, 0.3, 1.0), [(0.3, PR_BG), (np.inf, PR_FG)]),  # probable labels only, even at p = 1
    ("F-PF", 0.6, None, (0.0, 0.01, 0.6), [(0.01, PR_BG), (0.6, PR_FG), (np.inf, FG)]),
    ("F-PB", 0.5, None, (0.0, 0.5, 0.51), [(0.5, PR_BG), (0.51, PR_FG), (np.inf, FG)]),
    ("custom", 0.0, [0.2, 0.4, 0.7], (0.2, 0.4, 0.7), [(0.2, BG), (0.4, PR_BG), (0.7, PR_FG), (np.inf, FG)])])
def test_variant_masks_use_their_codes(variant: str, t: float, custom: list | None, thresholds: tuple,
                                       bands: list) -> None:
    assert variant_thresholds(variant, t, 0.01, custom) == pytest.approx(thresholds)
    # a CAM ramp over [0, 1] that also hits every threshold exactly (a band includes its lower end)
    ramp = np.unique(np.concatenate([np.linspace(0.0, 1.0, 2001), thresholds, [0.005, 0.505, 0.9999]]))
    ramp = ramp[(ramp >= 0) & (ramp <= 1)]
    mask = cam_to_grabcut_mask(ramp[None], *variant_thresholds(variant, t, 0.01, custom))[0]
    lower = 0.0
    for upper, code in bands:
        band = (ramp >= lower) & (ramp < upper)
        assert band.any(), f"{variant}: empty band [{lower}, {upper})"
        assert (mask[band] == code).all(), f"{variant}: p in [{lower}, {upper}) should be code {code}, got {np.unique(mask[band])}"
        lower = upper
    assert set(np.unique(mask)) == {code for _, code in bands}
    if variant == "PF-PB":
        assert mask[ramp == 1.0][0] == PR_FG and not (mask == FG).any()


@pytest.mark.parametrize("variant", ["PF-PB", "F-PF", "F-PB"])
@pytest.mark.parametrize("scope", ["image", "box"])
@pytest.mark.parametrize("iterations", [1, 3])
def test_grabcut_cam_beats_or_matches_a_poor_cam(variant: str, scope: str, iterations: int) -> None:
    image, gt, cam = _scene()
    rec = Record(Sample("s", image), classes=[1], cams={1: cam}, boxes=[Box(1, 14, 12, 51, 49)])
    t = {"PF-PB": 0.3, "F-PF": 0.6, "F-PB": 0.5}[variant]
    label = GrabCutCam(GrabCutCamParams(variant=variant, t=t, scope=scope, iterations=iterations), None)(rec)
    iou = ((label == 1) & gt).sum() / ((label == 1) | gt).sum()
    cam_iou = ((cam >= t) & gt).sum() / ((cam >= t) | gt).sum()
    assert iou > 0.6 and iou >= cam_iou - 0.05


def test_naked_grabcut_box_segments_the_object_inside_the_box() -> None:
    image, gt, _ = _scene()
    rec = Record(Sample("s", image), classes=[1], boxes=[Box(1, 15, 13, 50, 48)])
    assert "grabcut_box" in REFINERS
    label = GrabCutBox(GrabCutBoxParams(iterations=3), None)(rec)
    iou = ((label == 1) & gt).sum() / ((label == 1) | gt).sum()
    assert iou > 0.8
    assert (label[:13] == 0).all() and (label[:, 50:] == 0).all()


def test_cam_alone_baseline_thresholds() -> None:
    image, gt, cam = _scene()
    rec = Record(Sample("s", image), classes=[1], cams={1: cam})
    low = CamThreshold(CamThresholdParams(threshold=0.2), None)(rec)
    high = CamThreshold(CamThresholdParams(threshold=0.8), None)(rec)
    assert (low == 1).sum() > (high == 1).sum() > 0


def test_binary_class_meter_hand_computed() -> None:
    m = BinaryClassMeter(3)
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[1, 0, 1, 0]], bool)
    m.update(1, pred, gt)  # TP 1, FP 1, TN 1, FN 1
    m.update(2, np.zeros((1, 4), bool), np.array([[1, 0, 0, 0]], bool))  # TP 0, FP 0, TN 3, FN 1
    r = m.metrics()
    assert r["IoU"][1] == pytest.approx(1 / 3) and r["IoU"][2] == 0.0 and r["IoU"][0] is None
    assert r["mIoU"] == pytest.approx((1 / 3 + 0) / 2)
    assert r["fwIoU"] == pytest.approx((2 * 1 / 3 + 1 * 0) / 3)
    assert r["mAcc"] == pytest.approx((1 / 2 + 0 / 1) / 2)  # mean recall TP / (TP + FN)
    assert r["binary_acc"] == pytest.approx((2 / 4 + 3 / 4) / 2)  # paper 001's (TP + TN) / N


def test_sweep_table_names_both_accuracies() -> None:
    m = BinaryClassMeter(2)
    m.update(1, np.array([[1, 0, 0, 0]], bool), np.array([[1, 1, 0, 0]], bool))  # TP 1, FN 1, TN 2
    result = SweepResult([0.5], {"cam": [m.metrics()]}, {}, {})
    head, _, row = format_best_table(result, "class_seg").splitlines()
    assert head == f"| Technique | mIoU | fwIoU | mAcc | {BINARY_ACC_TITLE} |" and "(TP+TN)/N" in BINARY_ACC_TITLE
    assert row == "| cam | 50.0 | 50.0 | 50.0 | 75.0 |"


def test_gt_boxes_one_per_object() -> None:
    gt = np.zeros((30, 30), np.uint8)
    gt[2:8, 3:9] = 1
    gt[15:25, 15:28] = 1
    gt[20:22, 1:5] = 2
    boxes = sorted((b.cls, b.x0, b.y0, b.x1, b.y1) for b in gt_boxes(gt, [1, 2], min_pixels=4))
    assert boxes == [(1, 3, 2, 9, 8), (1, 15, 15, 28, 25), (2, 1, 20, 5, 22)]
