"""Dice / precision / recall / F-beta from the confusion matrix, and ODS / OIS / MAE of continuous maps,
each checked against a direct per-pixel computation."""
from __future__ import annotations

import numpy as np
import pytest

from wsss.evaluation import ConfusionMatrix
from wsss.evaluation.fscore import SaliencyMeter, f_beta


def _direct_scores(pred: np.ndarray, gt: np.ndarray, c: int, beta2: float = 0.3) -> tuple[float, float, float, float]:
    p, g = pred == c, gt == c
    tp = float((p & g).sum())
    precision = tp / p.sum() if p.sum() else 0.0
    recall = tp / g.sum() if g.sum() else 0.0
    dice = 2 * tp / (p.sum() + g.sum())
    f = (1 + beta2) * precision * recall / (beta2 * precision + recall) if precision + recall else 0.0
    return dice, precision, recall, f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_precision_recall_fbeta_per_class(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 4, (30, 30)).astype(np.uint8)
    pred = np.where(rng.random((30, 30)) < 0.7, gt, rng.integers(0, 4, (30, 30))).astype(np.uint8)
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    m = cm.metrics()
    for c in range(4):
        dice, precision, recall, f = _direct_scores(pred, gt, c)
        assert m["Dice"][c] == pytest.approx(dice)
        assert m["Precision"][c] == pytest.approx(precision)
        assert m["Recall"][c] == pytest.approx(recall)
        assert m["Fbeta"][c] == pytest.approx(f)
    assert m["mDice"] == pytest.approx(np.mean(m["Dice"]))
    # Dice and IoU are tied: D = 2 J / (1 + J)
    np.testing.assert_allclose(m["Dice"], [2 * j / (1 + j) for j in m["IoU"]])


def test_absent_class_is_left_out_of_means() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1]], np.uint8), np.array([[0, 1]], np.uint8))
    m = cm.metrics()
    assert np.isnan(m["Dice"][2]) and m["mDice"] == pytest.approx(1.0)


def _reference(maps: list[np.ndarray], gts: list[np.ndarray], bins: int = 256, beta2: float = 0.3) -> dict:
    """Brute force: binarise at every level, count pixels directly."""
    thresholds = np.arange(bins) / (bins - 1)
    tp_all, fp_all, pos_all, per_image = np.zeros(bins), np.zeros(bins), 0, []
    for prob, gt in zip(maps, gts):
        valid, target = gt != 255, (gt == 1)
        fs = []
        for i, t in enumerate(thresholds):
            pred = (prob >= t - 1e-12) & valid
            tp, fp = (pred & target).sum(), (pred & ~target).sum()
            tp_all[i] += tp
            fp_all[i] += fp
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / target.sum()
            fs.append(f_beta(p, r, beta2))
        pos_all += target.sum()
        per_image.append(max(fs))
    precision = np.where(tp_all + fp_all > 0, tp_all / np.maximum(tp_all + fp_all, 1), 0)
    ods = f_beta(precision, tp_all / pos_all, beta2).max()
    mae = np.mean([np.abs(p[g != 255] - (g[g != 255] == 1)).mean() for p, g in zip(maps, gts)])
    return {"ODS": ods, "OIS": np.mean(per_image), "MAE": mae}


@pytest.mark.parametrize("bins", [256, 11])
def test_ods_ois_mae_match_brute_force(bins: int) -> None:
    rng = np.random.default_rng(3)
    maps, gts = [], []
    for _ in range(4):
        gt = (rng.random((20, 24)) < 0.3).astype(np.uint8)
        gt[0, :5] = 255
        prob = np.clip(0.5 * gt + 0.6 * rng.random(gt.shape), 0, 1)
        prob = np.round(prob * (bins - 1)) / (bins - 1)  # exactly on the threshold grid
        maps.append(prob)
        gts.append(gt)
    meter = SaliencyMeter(bins=bins)
    for p, g in zip(maps, gts):
        meter.update(p, g)
    got, want = meter.metrics(), _reference(maps, gts, bins)
    for key in ("ODS", "OIS", "MAE"):
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def test_perfect_and_inverted_maps() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[2:6, 3:8] = 1
    perfect, inverted = SaliencyMeter(), SaliencyMeter()
    perfect.update(gt.astype(float), gt)
    inverted.update(1.0 - gt, gt)
    assert perfect.metrics()["ODS"] == 1.0 and perfect.metrics()["MAE"] == 0.0
    assert inverted.metrics()["MAE"] == 1.0
    # at threshold 0 everything is foreground: precision = 0.2, recall = 1
    assert inverted.metrics()["ODS"] == pytest.approx(f_beta(0.2, 1.0))


def test_out_of_range_map_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        SaliencyMeter().update(np.full((2, 2), 2.0), np.zeros((2, 2), np.uint8))
