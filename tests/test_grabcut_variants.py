"""GrabCut-CAM variants, naked GrabCut on boxes, CAM-alone, and paper 001's binary class metrics."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsss.cam.sweep import BinaryClassMeter, gt_boxes
from wsss.data.base import Sample
from wsss.masks import REFINERS
from wsss.masks.cam_threshold import CamThreshold, CamThresholdParams
from wsss.masks.grabcut_box import GrabCutBox, GrabCutBoxParams
from wsss.masks.grabcut_cam import GrabCutCam, GrabCutCamParams, cam_to_grabcut_mask, variant_thresholds
from wsss.record import Box, Record


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    gt = np.zeros((64, 64), bool)
    cv2.circle(image, (32, 30), 14, (220, 200, 40), -1)
    cv2.circle(gt.view(np.uint8), (32, 30), 14, 1, -1)
    cam = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 6)  # a blurry CAM peaking on the object
    return image, gt, cam / cam.max()


@pytest.mark.parametrize("variant,t,codes", [("PF-PB", 0.3, {cv2.GC_PR_BGD, cv2.GC_PR_FGD}),
                                             ("F-PF", 0.6, {cv2.GC_PR_BGD, cv2.GC_PR_FGD, cv2.GC_FGD}),
                                             ("F-PB", 0.5, {cv2.GC_PR_BGD, cv2.GC_FGD, cv2.GC_PR_FGD})])
def test_variant_masks_use_their_codes(variant: str, t: float, codes: set) -> None:
    _, _, cam = _scene()
    t0, t1, t2 = variant_thresholds(variant, t)
    assert t0 <= t1 < t2
    mask = cam_to_grabcut_mask(cam, t0, t1, t2)
    assert set(np.unique(mask)) <= codes | {cv2.GC_BGD}
    if t2 < 1.0:
        assert (mask[cam >= t2] == cv2.GC_FGD).all()
    else:  # PF-PB: only probable labels, even at the CAM's peak
        assert not (mask == cv2.GC_FGD).any()


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
    m.update(2, gt, gt)  # perfect: TP 2, TN 2
    r = m.metrics()
    assert r["IoU"][1] == pytest.approx(1 / 3) and r["IoU"][2] == 1.0 and r["IoU"][0] is None
    assert r["mIoU"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["mAcc"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["fwIoU"] == pytest.approx((2 * 1 / 3 + 2 * 1.0) / 4)


def test_gt_boxes_one_per_object() -> None:
    gt = np.zeros((30, 30), np.uint8)
    gt[2:8, 3:9] = 1
    gt[15:25, 15:28] = 1
    gt[20:22, 1:5] = 2
    boxes = sorted((b.cls, b.x0, b.y0, b.x1, b.y1) for b in gt_boxes(gt, [1, 2], min_pixels=4))
    assert boxes == [(1, 3, 2, 9, 8), (1, 15, 15, 28, 25), (2, 1, 20, 5, 22)]
