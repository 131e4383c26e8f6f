"""One evaluation pass with every metric of papers 001 and 002, and the report files people and tools read.

``evaluate_dir`` scores ``<pred_dir>/<id>.png`` label maps (confusion-matrix metrics: mIoU, fwIoU,
mAcc, Dice, precision, recall, F-beta per class) plus ODS / OIS / MAE of each class's binary map
and of the foreground-vs-background map. With ``maps_dir`` it also scores continuous maps:
``<id>.npy`` (HxW foreground probability, or KxHxW one map per foreground class 1..K) or ``<id>.png``
(grayscale, scaled by its maximum possible value).

``write_report`` writes ``eval.json``, ``eval_per_class.csv``, ``iou_per_class.png`` and
``confusion_matrix.png``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from wsss.data.base import SegDataset, read_gt
from wsss.evaluation.fscore import SaliencyMeter
from wsss.evaluation.metrics import ConfusionMatrix
from wsss.utils.io import IGNORE_INDEX, atomic_path, read_label_png, write_json_atomic, write_text_atomic

PER_CLASS_KEYS = ("IoU", "Acc", "Dice", "Precision", "Recall", "Fbeta")


def read_map(path: Path) -> np.ndarray:
    """A continuous map in [0, 1]: float ``.npy`` as stored, integer PNG divided by its type's maximum."""
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(np.float64)
        with Image.open(path) as im:
            arr = np.asarray(im)
            return arr.astype(np.float64) / (65535.0 if arr.dtype == np.uint16 or arr.max() > 255 else 255.0)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read map {path}: {e}") from None


def _find_map(maps_dir: Path, image_id: str) -> Path | None:
    for suffix in (".npy", ".png"):
        if (maps_dir / f"{image_id}{suffix}").is_file():
            return maps_dir / f"{image_id}{suffix}"
    return None


@dataclasses.dataclass
class _Meters:
    """What ``evaluate_dir`` sums over the images: label-map and continuous-map scores."""

    k: int
    cm: ConfusionMatrix
    label_fg: SaliencyMeter = dataclasses.field(default_factory=SaliencyMeter)
    label_cls: dict[int, SaliencyMeter] = dataclasses.field(default_factory=dict)
    map_fg: SaliencyMeter = dataclasses.field(default_factory=SaliencyMeter)
    map_cls: dict[int, SaliencyMeter] = dataclasses.field(default_factory=dict)
    images: int = 0
    missing: int = 0  # images without a prediction (scored as all background)
    missing_maps: int = 0
    per_class_maps: bool = False

    def __post_init__(self) -> None:
        self.label_cls = {c: SaliencyMeter() for c in range(1, self.k)}
        self.map_cls = {c: SaliencyMeter() for c in range(1, self.k)}


def evaluate_dir(pred_dir: str | Path | None, dataset: SegDataset,
                 pred_ignore: Literal["background", "exclude"] = "background", maps_dir: str | Path | None = None,
                 desc: str = "evaluate") -> dict:
    """Every metric over the images of ``dataset`` that have ground truth (see the module docstring)."""
    k = len(dataset.class_names)
    meters = _Meters(k, ConfusionMatrix(k, pred_ignore=pred_ignore))
    for image_id, gt in _images_with_gt(dataset, desc):
        meters.images += 1
        if pred_dir is not None:
            _score_labels(meters, Path(pred_dir), image_id, gt)
        if maps_dir is not None:
            _score_maps(meters, Path(maps_dir), image_id, gt)
    return _summary(meters, list(dataset.class_names), pred_dir is not None, maps_dir is not None)


def _images_with_gt(dataset: SegDataset, desc: str) -> Iterator[tuple[str, np.ndarray]]:
    """(id, checked ground truth) of each image that has one; a bad mask raises ``read_gt``'s ValueError."""
    for image_id in tqdm(dataset.ids, desc=desc, unit="img", leave=False):
        gt = read_gt(dataset, image_id)
        if gt is not None:
            yield image_id, gt


def _read_prediction(meters: _Meters, pred_path: Path, gt: np.ndarray) -> np.ndarray:
    """The label map at ``pred_path``; a missing one is counted and scored as all background."""
    if pred_path.is_file():
        pred = read_label_png(pred_path)
    else:
        meters.missing += 1
        pred = np.zeros_like(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"{pred_path}: size {pred.shape[::-1]} differs from ground truth {gt.shape[::-1]}")
    return pred


def _score_labels(meters: _Meters, pred_dir: Path, image_id: str, gt: np.ndarray) -> None:
    """Confusion matrix, plus ODS / OIS / MAE of the hard foreground and per-class maps."""
    pred_path = pred_dir / f"{image_id}.png"
    pred = _read_prediction(meters, pred_path, gt)
    try:
        meters.cm.update(pred, gt)
    except ValueError as e:  # the matrix knows no file names: say which image and prediction
        raise ValueError(f"image '{image_id}' (prediction {pred_path}): {e}") from None
    hard = np.where(pred == IGNORE_INDEX, 0, pred)  # abstaining counts as background here
    meters.label_fg.update((hard > 0).astype(np.float64), np.where(gt == IGNORE_INDEX, gt, gt > 0))
    for c in set(np.unique(gt).tolist()) | set(np.unique(hard).tolist()):
        if 0 < c < meters.k:
            meters.label_cls[c].update((hard == c).astype(np.float64), np.where(gt == IGNORE_INDEX, gt, gt == c))


def _score_maps(meters: _Meters, maps_dir: Path, image_id: str, gt: np.ndarray) -> None:
    """ODS / OIS / MAE of the image's continuous foreground map (and per-class maps for a KxHxW one)."""
    path = _find_map(maps_dir, image_id)
    if path is None:
        meters.missing_maps += 1
        return
    prob = read_map(path)
    fg_gt = np.where(gt == IGNORE_INDEX, gt, gt > 0).astype(np.uint8)
    if prob.ndim == 3:
        prob = _score_class_maps(meters, path, prob, gt)
    if prob.shape != gt.shape:
        raise ValueError(f"{path}: map size {prob.shape[::-1]} differs from ground truth {gt.shape[::-1]}")
    meters.map_fg.update(prob, fg_gt)


def _score_class_maps(meters: _Meters, path: Path, prob: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Scores each class's map of a (K-1 or K)xHxW stack; returns their max as the foreground map."""
    k = meters.k
    if prob.shape[0] not in (k - 1, k):
        raise ValueError(f"{path}: {prob.shape[0]} maps, expected {k - 1} (one per class) or {k}")
    meters.per_class_maps = True
    fg_maps = prob if prob.shape[0] == k - 1 else prob[1:]
    for c in range(1, k):
        if (gt == c).any() or fg_maps[c - 1].max() > 0:  # a class neither present nor predicted says nothing
            meters.map_cls[c].update(fg_maps[c - 1], np.where(gt == IGNORE_INDEX, gt, gt == c).astype(np.uint8))
    return fg_maps.max(0)


def _summary(meters: _Meters, class_names: list[str], labels: bool, maps: bool) -> dict:
    out: dict = {"images": meters.images, "class_names": class_names}
    if labels:
        out |= meters.cm.metrics() | {"missing": meters.missing, "matrix": meters.cm.matrix.tolist()}
        out["labels_fg"] = meters.label_fg.metrics()
        out["labels_per_class"] = {class_names[c]: m.metrics() for c, m in meters.label_cls.items()}
    if maps:
        out["maps_fg"] = meters.map_fg.metrics() | {"missing": meters.missing_maps}
        if meters.per_class_maps:
            out["maps_per_class"] = {class_names[c]: m.metrics() for c, m in meters.map_cls.items()}
    return out


def per_class_rows(metrics: dict) -> list[dict]:
    """One row per class: IoU, Acc, Dice, Precision, Recall, F-beta and, when scored, ODS / OIS / MAE."""
    names = metrics["class_names"]
    rows = []
    for c, name in enumerate(names):
        row: dict = {"class": name, "gt_pixels": int(np.asarray(metrics["matrix"])[c].sum())}
        row |= {key: metrics[key][c] for key in PER_CLASS_KEYS}
        for group in ("labels_per_class", "maps_per_class"):
            if c > 0 and group in metrics:
                prefix = "label_" if group == "labels_per_class" else "map_"
                row |= {prefix + m: metrics[group][name][m] for m in ("ODS", "OIS", "MAE")}
        rows.append(row)
    return rows


def _save_figure(fig: object, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def plot_iou_bars(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, iou = metrics["class_names"], np.nan_to_num(np.asarray(metrics["IoU"], np.float64))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.5))
    ax.bar(range(len(names)), 100 * iou, color="tab:blue")
    ax.axhline(100 * metrics["mIoU"], color="tab:red", linestyle="--", label=f"mIoU {100 * metrics['mIoU']:.1f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper right", fontsize=8)
    _save_figure(fig, path)
    plt.close(fig)


def plot_confusion(metrics: dict, path: Path) -> None:
    """Rows = ground truth, columns = prediction, each row normalised to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, m = metrics["class_names"], np.asarray(metrics["matrix"], np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.3 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if len(names) <= 25:
        for i in range(len(names)):
            for j in range(len(names)):
                if norm[i, j] >= 0.01:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save_figure(fig, path)
    plt.close(fig)


def write_report(metrics: dict, out_dir: str | Path, stem: str = "eval") -> dict[str, Path]:
    """JSON of everything, a per-class CSV and (for label maps) the two plots; returns the paths written."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json"}
    write_json_atomic(paths["json"], metrics)
    if "matrix" in metrics:
        rows = per_class_rows(metrics)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        paths["csv"] = out_dir / f"{stem}_per_class.csv"
        write_text_atomic(paths["csv"], buf.getvalue())
        paths["iou_plot"] = out_dir / "iou_per_class.png"
        plot_iou_bars(metrics, paths["iou_plot"])
        paths["confusion_plot"] = out_dir / "confusion_matrix.png"
        plot_confusion(metrics, paths["confusion_plot"])
    return paths
