import numpy as np
import pytest

from wsss.evaluation import ConfusionMatrix, metrics_from_confusion


def test_confusion_matrix_counts_and_ignores() -> None:
    gt = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [1, 2, 2]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    expected = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cm.matrix, expected)


def test_metrics_match_hand_computation() -> None:
    # gt rows, pred columns
    m = np.array([[50, 10, 0], [5, 20, 5], [0, 0, 10]])
    out = metrics_from_confusion(m)
    iou = [50 / (60 + 55 - 50), 20 / (30 + 30 - 20), 10 / (10 + 15 - 10)]
    assert out["IoU"] == pytest.approx(iou)
    assert out["mIoU"] == pytest.approx(np.mean(iou))
    freq = np.array([60, 30, 10]) / 100
    assert out["fwIoU"] == pytest.approx(float((freq * iou).sum()))
    assert out["mAcc"] == pytest.approx(np.mean([50 / 60, 20 / 30, 10 / 10]))
    assert out["aAcc"] == pytest.approx(80 / 100)


def test_absent_class_is_left_out_of_mean() -> None:
    m = np.array([[4, 0, 0], [0, 4, 0], [0, 0, 0]])
    out = metrics_from_confusion(m)
    assert np.isnan(out["IoU"][2])
    assert out["mIoU"] == pytest.approx(1.0)


@pytest.mark.parametrize("mode,expected_miou", [("background", (2 / 3 + 1 / 2) / 2), ("exclude", 1.0)])
def test_predicted_ignore_modes(mode: str, expected_miou: float) -> None:
    gt = np.array([[0, 1, 1, 0]], np.uint8)
    pred = np.array([[0, 1, 255, 0]], np.uint8)
    cm = ConfusionMatrix(2, pred_ignore=mode)
    cm.update(pred, gt)
    assert cm.metrics()["mIoU"] == pytest.approx(expected_miou)
    assert cm.coverage == pytest.approx(0.75)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(np.zeros((2, 2), np.uint8), np.zeros((3, 2), np.uint8))
