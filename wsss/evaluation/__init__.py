"""Evaluation stage: label maps against ground truth."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from wsss.data import SegDataset
from wsss.data.base import read_gt
from wsss.evaluation.metrics import ConfusionMatrix, format_table, metrics_from_confusion
from wsss.utils.io import read_label_png


def evaluate_label_dir(pred_dir: str | Path, dataset: SegDataset, pred_ignore: str = "background",
                       desc: str = "evaluate") -> dict:
    """Score ``<pred_dir>/<id>.png`` for every image of ``dataset`` that has a mask.

    An image without a prediction counts as all background (a failed image is not free).
    """
    pred_dir = Path(pred_dir)
    cm = ConfusionMatrix(len(dataset.class_names), pred_ignore=pred_ignore)
    missing = 0
    for image_id in tqdm(dataset.ids, desc=desc, unit="img", leave=False):
        gt = read_gt(dataset, image_id)  # the reader's gt() when it has one (COCO, Kvasir), else its mask PNG
        if gt is None:
            continue
        pred_path = pred_dir / f"{image_id}.png"
        if pred_path.is_file():
            pred = read_label_png(pred_path)
        else:
            missing += 1
            pred = gt * 0
        cm.update(pred, gt)
    return cm.metrics() | {"missing": missing, "matrix": cm.matrix.tolist()}


__all__ = ["ConfusionMatrix", "evaluate_label_dir", "format_table", "metrics_from_confusion"]
