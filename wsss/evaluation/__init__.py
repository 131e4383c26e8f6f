"""Evaluation stage: label maps against ground truth."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from wsss.data import SegDataset
from wsss.data.base import read_gt
from wsss.evaluation.metrics import ConfusionMatrix, format_table, metrics_from_confusion
from wsss.utils.io import read_label_png


class CheckedGT:
    """``dataset`` whose ``gt`` applies the reader's checks and turns a bad mask into None, recorded in
    :attr:`skipped`: one bad ground-truth file costs its image, not the whole results table.

    Scorers that go through :func:`read_gt` (``evaluate_dir``, the CAM sweep) skip such images.
    """

    def __init__(self, dataset: SegDataset) -> None:
        self.dataset = dataset
        self.skipped: list[dict[str, str]] = []

    def __getattr__(self, name: str) -> Any:  # ids, class_names, mask_path, load, ... of the reader
        return getattr(self.dataset, name)

    def gt(self, image_id: str) -> np.ndarray | None:
        try:
            return read_gt(self.dataset, image_id)
        except ValueError as e:  # the readers raise ValueError naming the bad file
            self.skipped.append({"image": image_id, "error": str(e)})
            return None


def evaluate_label_dir(pred_dir: str | Path, dataset: SegDataset, pred_ignore: str = "background",
                       desc: str = "evaluate") -> dict:
    """Score ``<pred_dir>/<id>.png`` for every image of ``dataset`` that has a mask.

    An image without a prediction counts as all background (a failed image is not free). An image whose
    ground truth fails the reader's checks is left out and listed under ``"skipped"`` ({image, error}).
    """
    pred_dir = Path(pred_dir)
    checked = CheckedGT(dataset)
    cm = ConfusionMatrix(len(dataset.class_names), pred_ignore=pred_ignore)
    missing = 0
    for image_id in tqdm(dataset.ids, desc=desc, unit="img", leave=False):
        gt = checked.gt(image_id)  # the reader's gt() when it has one (COCO, Kvasir), else its mask PNG; checked
        if gt is None:
            continue
        pred_path = pred_dir / f"{image_id}.png"
        if pred_path.is_file():
            pred = read_label_png(pred_path)
        else:
            missing += 1
            pred = gt * 0
        try:
            cm.update(pred, gt)
        except ValueError as e:  # the matrix knows no file names: say which image and prediction
            raise ValueError(f"image '{image_id}' (prediction {pred_path}, ground truth "
                             f"{dataset.mask_path(image_id)}): {e}") from None
    return cm.metrics() | {"missing": missing, "matrix": cm.matrix.tolist(), "skipped": checked.skipped}


def format_skipped(skipped: list[dict[str, str]], limit: int = 10) -> str:
    """Lines naming the images left out of scoring and why (empty when none)."""
    if not skipped:
        return ""
    lines = [f"{len(skipped)} images skipped (bad ground truth):"]
    lines += [f"  {s['image']}: {s['error']}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (see 'skipped' in the metrics)")
    return "\n".join(lines)


__all__ = ["CheckedGT", "ConfusionMatrix", "evaluate_label_dir", "format_skipped", "format_table",
           "metrics_from_confusion"]
