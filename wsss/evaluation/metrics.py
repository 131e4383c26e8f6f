"""Confusion-matrix segmentation metrics: mIoU, fwIoU, mAcc, pixel accuracy, per-class IoU, Dice, precision,
recall and F-beta (beta^2 = 0.3, paper 002)."""
from __future__ import annotations

from typing import Literal

import numpy as np

from wsss.utils.io import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates ``matrix[gt, pred]`` over images.

    Ground-truth pixels equal to ``ignore_index`` are skipped. Predicted ignore pixels count as
    background by default (the conservative WSSS convention: abstaining is not free);
    ``pred_ignore='exclude'`` drops them instead, and :attr:`coverage` reports their share.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 pred_ignore: Literal["background", "exclude"] = "background") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.pred_ignore = pred_ignore
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        self.abstained = 0
        self.scored = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
        valid = gt != self.ignore_index
        abstain = valid & (pred == self.ignore_index)
        self.abstained += int(abstain.sum())
        self.scored += int(valid.sum())
        pred = pred.astype(np.int64)
        if self.pred_ignore == "background":
            pred = np.where(abstain, 0, pred)
        else:
            valid &= ~abstain
        gt_v, pred_v = gt[valid].astype(np.int64), pred[valid]
        if gt_v.size and (gt_v.max() >= self.num_classes or pred_v.max() >= self.num_classes):
            raise ValueError(f"class index >= num_classes ({self.num_classes}) in prediction or ground truth")
        self.matrix += np.bincount(gt_v * self.num_classes + pred_v, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    @property
    def coverage(self) -> float:
        """Share of scored pixels that received a class (not 255)."""
        return 1.0 - self.abstained / max(self.scored, 1)

    def metrics(self) -> dict[str, float | list[float]]:
        return metrics_from_confusion(self.matrix) | {"coverage": self.coverage}


def metrics_from_confusion(matrix: np.ndarray) -> dict[str, float | list[float]]:
    """All scores from ``matrix[gt, pred]``; classes absent from both sides are left out of means."""
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    gt_count = m.sum(1)
    pred_count = m.sum(0)
    union = gt_count + pred_count - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
    total = m.sum()
    freq = gt_count / total if total else gt_count
    present = ~np.isnan(iou)
    extra = dice_precision_recall(m)
    return extra | {
        "mIoU": float(np.nanmean(iou)) if present.any() else float("nan"),
        "fwIoU": float(np.nansum(freq * np.nan_to_num(iou))),
        "mAcc": float(np.nanmean(acc)) if (gt_count > 0).any() else float("nan"),
        "aAcc": float(tp.sum() / total) if total else float("nan"),
        "IoU": iou.tolist(),
        "Acc": acc.tolist(),
    }


def dice_precision_recall(matrix: np.ndarray, beta2: float = 0.3) -> dict[str, float | list[float]]:
    """Per-class Dice, precision, recall and F-beta from ``matrix[gt, pred]``, and their means over classes
    present in ground truth or prediction (NaN where a class is absent from both)."""
    m = matrix.astype(np.float64)
    tp = np.diag(m)
    gt_count, pred_count = m.sum(1), m.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        present = (gt_count + pred_count) > 0
        dice = np.where(present, 2 * tp / (gt_count + pred_count), np.nan)
        precision = np.where(present, np.where(pred_count > 0, tp / pred_count, 0.0), np.nan)
        recall = np.where(present, np.where(gt_count > 0, tp / gt_count, 0.0), np.nan)
        denom = beta2 * precision + recall
        fbeta = np.where(present, np.where(denom > 0, (1 + beta2) * precision * recall / denom, 0.0), np.nan)
    mean = lambda v: float(np.nanmean(v)) if present.any() else float("nan")  # noqa: E731
    return {"mDice": mean(dice), "mPrecision": mean(precision), "mRecall": mean(recall), "mFbeta": mean(fbeta),
            "Dice": dice.tolist(), "Precision": precision.tolist(), "Recall": recall.tolist(), "Fbeta": fbeta.tolist()}


def format_table(rows: dict[str, dict], class_names: list[str] | None = None, per_class: bool = False) -> str:
    """A plain-text table of mIoU / fwIoU / mAcc (x100) per row; per-class IoU columns on request."""
    head = ["", "mIoU", "fwIoU", "mAcc"]
    if per_class and class_names:
        head += class_names
    lines = [head]
    for name, m in rows.items():
        line = [name] + [f"{100 * m[k]:.1f}" for k in ("mIoU", "fwIoU", "mAcc")]
        if per_class and class_names:
            line += ["-" if np.isnan(v) else f"{100 * v:.1f}" for v in m["IoU"]]
        lines.append(line)
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(lines[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in lines[1:]])


def class_iou(pred: np.ndarray, gt: np.ndarray, cls: int, ignore_index: int = IGNORE_INDEX) -> float | None:
    """IoU of class ``cls`` between a predicted mask (bool, or a label map) and a ground-truth label map,
    over the pixels the ground truth does not ignore; None when neither has the class there."""
    valid = gt != ignore_index
    pred_c = (pred if pred.dtype == bool else pred == cls) & valid
    gt_c = (gt == cls) & valid
    union = int((pred_c | gt_c).sum())
    return float((pred_c & gt_c).sum()) / union if union else None
