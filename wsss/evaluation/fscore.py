"""Metrics for continuous maps (paper 002): F-beta (beta^2 = 0.3) at the best dataset-wide threshold (ODS) and
at each image's best threshold (OIS), and the mean absolute error (MAE) of the unthresholded map.

Maps are in [0, 1]; ground truth is binary (1 = object) with 255 ignored. Thresholds are the
``bins`` equally spaced levels 0, 1/(bins-1), ..., 1; a pixel is foreground when ``map >= t``.
A binary map (a label map's foreground) gives the same F at every threshold above 0, so the
threshold search does nothing for it, as the paper notes for its binary-map methods.
"""
from __future__ import annotations

import numpy as np

from wsss.utils.io import IGNORE_INDEX

BETA2 = 0.3


def f_beta(precision: np.ndarray, recall: np.ndarray, beta2: float = BETA2) -> np.ndarray:
    """(1 + b2) P R / (b2 P + R), 0 where both are 0."""
    precision, recall = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    denom = beta2 * precision + recall
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (1 + beta2) * precision * recall / denom, 0.0)


class SaliencyMeter:
    """Accumulates per-threshold true/false positives over images for ODS, OIS and MAE."""

    def __init__(self, bins: int = 256, beta2: float = BETA2) -> None:
        self.bins = bins
        self.beta2 = beta2
        self.tp = np.zeros(bins, np.int64)  # foreground pixels with map >= threshold i
        self.fp = np.zeros(bins, np.int64)
        self.positives = 0
        self.image_best: list[float] = []  # OIS: each image's best F
        self.image_mae: list[float] = []

    def update(self, prob: np.ndarray, gt: np.ndarray) -> None:
        """``prob``: HxW map in [0, 1]; ``gt``: HxW with 1 (or any value > 0) = object, 0 = background, 255 = ignore."""
        if prob.shape != gt.shape:
            raise ValueError(f"map shape {prob.shape} differs from ground truth {gt.shape}")
        prob = np.asarray(prob, np.float64)
        if prob.size and (np.nanmin(prob) < 0 or np.nanmax(prob) > 1):
            raise ValueError(f"map values must lie in [0, 1], got [{prob.min():.3g}, {prob.max():.3g}]")
        valid = gt != IGNORE_INDEX
        target = (gt > 0) & valid
        level = np.clip(np.floor(np.nan_to_num(prob) * (self.bins - 1) + 1e-9), 0, self.bins - 1).astype(np.int64)
        # counts at level k, then a reverse cumulative sum = pixels with map >= threshold k
        tp = np.cumsum(np.bincount(level[target], minlength=self.bins)[::-1])[::-1]
        fp = np.cumsum(np.bincount(level[valid & ~target], minlength=self.bins)[::-1])[::-1]
        pos = int(target.sum())
        self.tp += tp
        self.fp += fp
        self.positives += pos
        if valid.any():
            self.image_mae.append(float(np.abs(prob[valid] - target[valid]).mean()))
        if pos:  # an image without the object has no recall; it is left out of OIS (it still counts in ODS)
            self.image_best.append(float(self._f(tp, fp, pos).max()))

    def _f(self, tp: np.ndarray, fp: np.ndarray, pos: int) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
            recall = tp / max(pos, 1)
        return f_beta(precision, recall, self.beta2)

    def metrics(self) -> dict[str, float]:
        f = self._f(self.tp, self.fp, self.positives)
        best = int(np.argmax(f))
        return {
            "ODS": float(f[best]) if self.positives else float("nan"),
            "ODS_threshold": best / (self.bins - 1),
            "OIS": float(np.mean(self.image_best)) if self.image_best else float("nan"),
            "MAE": float(np.mean(self.image_mae)) if self.image_mae else float("nan"),
            "images": len(self.image_mae),
        }
