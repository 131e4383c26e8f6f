"""Threshold sweeps behind paper 001's Tables 1-2 and paper 002's Table 1.

CAMs (and rCAM stages) are computed once per image and reused for every threshold.

- Paper 001, class segmentation (scope image) and object segmentation (inside each box): for
  each technique (CAM alone, GrabCut-CAM PF-PB / F-PF / F-PB, naked GrabCut on boxes) and each t,
  class-wise binary TP/FP/TN/FN are summed over the data set; IoU_i = TP/(TP+FP+FN), mIoU
  averages over classes, fwIoU weights IoU_i by the class's true pixels. mAcc is the mean class
  recall TP/(TP+FN), as everywhere in wsss (and mmseg). Paper 001's own "mAcc" averages
  Acc_i = (TP+TN)/(TP+FP+TN+FN), which counts the true negatives and so is high for any small
  object; it is reported separately as ``binary_acc`` ("Acc001 (TP+TN)/N"). Each technique is
  reported at its best t (by mIoU).
- Paper 002: OIS, ODS (F-beta, beta^2 = 0.3) and MAE of CAM_1, CAM_2, rCAM_1..3 and rCAM, each a
  continuous map per (image, class) against that class's ground-truth mask.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from wsss.boxes import cam_component_boxes
from wsss.data.base import Box, read_gt
from wsss.evaluation.fscore import SaliencyMeter, f_beta
from wsss.masks.grabcut_box import grabcut_rect
from wsss.masks.grabcut_cam import GrabCutCam, GrabCutCamParams
from wsss.record import Record
from wsss.utils.io import IGNORE_INDEX

VARIANTS = ("PF-PB", "F-PF", "F-PB")
BINARY_ACC_TITLE = "Acc₀₀₁ (TP+TN)/N"  # paper 001's accuracy, which counts true negatives


class BinaryClassMeter:
    """Paper 001's class-wise binary counts, summed over images."""

    def __init__(self, num_classes: int) -> None:
        self.counts = np.zeros((num_classes, 4), np.int64)  # TP, FP, TN, FN

    def update(self, cls: int, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> None:
        valid = np.ones(gt.shape, bool) if valid is None else valid
        p, g = pred[valid].astype(bool), gt[valid].astype(bool)
        self.counts[cls] += [int((p & g).sum()), int((p & ~g).sum()), int((~p & ~g).sum()), int((~p & g).sum())]

    def metrics(self) -> dict[str, Any]:
        """mIoU, fwIoU, mAcc (mean recall), binary_acc (paper 001's mean (TP+TN)/N) and per-class IoU.

        Means run over the classes that were scored; mAcc over those with true pixels (recall is
        undefined without any).
        """
        tp, fp, tn, fn = self.counts.T.astype(np.float64)
        seen = self.counts.sum(1) > 0
        if not seen.any():
            return {"mIoU": float("nan"), "fwIoU": float("nan"), "mAcc": float("nan"), "binary_acc": float("nan"), "IoU": []}
        true = tp + fn
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 0.0)
            recall = np.where(true > 0, tp / true, np.nan)
            binary_acc = (tp + tn) / np.maximum(tp + fp + tn + fn, 1)
        has_true = seen & (true > 0)
        return {"mIoU": float(iou[seen].mean()), "fwIoU": float((true * iou).sum() / max(true.sum(), 1)),
                "mAcc": float(recall[has_true].mean()) if has_true.any() else float("nan"),
                "binary_acc": float(binary_acc[seen].mean()),
                "IoU": [float(v) if s else None for v, s in zip(iou, seen)]}


@dataclasses.dataclass
class SweepResult:
    thresholds: list[float]
    class_seg: dict[str, list[dict]]  # technique -> metrics per threshold
    object_seg: dict[str, list[dict]]
    saliency: dict[str, dict]  # CAM variant -> OIS / ODS / MAE (+ F per threshold)

    def best(self, task: str, key: str = "mIoU") -> dict[str, tuple[float | None, dict]]:
        """technique -> (best t, its metrics); t is None for a technique without a threshold."""
        rows = {}
        for name, per_t in getattr(self, task).items():
            if len(per_t) == 1:
                rows[name] = (None, per_t[0])
                continue
            i = int(np.nanargmax([m[key] for m in per_t]))
            rows[name] = (self.thresholds[i], per_t[i])
        return rows


def gt_boxes(gt: np.ndarray, classes: list[int], min_pixels: int = 16) -> list[Box]:
    """One box per connected component of each class in the ground truth (object segmentation)."""
    boxes: list[Box] = []
    for c in classes:
        area = min_pixels / max(gt.size, 1)
        boxes += cam_component_boxes((gt == c).astype(np.float32), c, 0.5, area, 100)
    return boxes


@dataclasses.dataclass
class _Sweep:
    """Meters of every technique at every threshold, and the GrabCut-CAM cutter of each (variant, t, scope)."""

    thresholds: list[float]
    iterations: int
    margin: float
    cutters: dict[tuple[str, int, str], GrabCutCam]
    class_seg: dict[str, list[BinaryClassMeter]]
    object_seg: dict[str, list[BinaryClassMeter]]
    saliency: dict[str, SaliencyMeter]


def sweep_dataset(dataset: Any, cam_stage: Any, thresholds: list[float], iterations: int = 1,
                  rcam: Any = None, limit: int | None = None, delta: float = 0.01, margin: float = 0.15) -> SweepResult:
    """Run every technique at every threshold over ``dataset`` (images with ground truth)."""
    k = len(dataset.class_names)
    sweep = _new_sweep(k, thresholds, iterations, delta, margin, with_rcam=rcam is not None)
    ids = list(dataset.ids)[:limit] if limit else list(dataset.ids)
    for image_id in tqdm(ids, desc="sweep", unit="img"):
        gt = read_gt(dataset, image_id)
        if gt is None:
            continue
        _sweep_image(sweep, dataset.load(image_id), gt, cam_stage, rcam, k)
    return _sweep_result(sweep)


def _new_sweep(k: int, thresholds: list[float], iterations: int, delta: float, margin: float, with_rcam: bool) -> _Sweep:
    techniques = ["cam"] + [f"gccam {v}" for v in VARIANTS]
    cls_m = {n: [BinaryClassMeter(k) for _ in thresholds] for n in techniques}
    obj_m = {"grabcut": [BinaryClassMeter(k)]} | {n: [BinaryClassMeter(k) for _ in thresholds] for n in techniques}
    sal = {s: SaliencyMeter() for s in ("cam1", "cam2", "rcam1", "rcam2", "rcam3", "rcam")} if with_rcam else {}
    cutters = {(v, i, sc): GrabCutCam(GrabCutCamParams(variant=v, t=t, delta=delta, scope=sc, iterations=iterations,
                                                       margin=margin), None)
               for v in VARIANTS for i, t in enumerate(thresholds) for sc in ("image", "box")}
    return _Sweep(list(thresholds), iterations, margin, cutters, cls_m, obj_m, sal)


def _sweep_image(sweep: _Sweep, sample: Any, gt: np.ndarray, cam_stage: Any, rcam: Any, k: int) -> None:
    """Class segmentation, object segmentation and (with ``rcam``) saliency of one image."""
    classes = [int(c) for c in np.unique(gt) if 0 < c < k]
    rec = Record(sample, classes=classes)
    rec.cams = cam_stage(rec)  # once per image, reused for every threshold
    valid = gt != IGNORE_INDEX
    for c in classes:
        _class_seg(sweep, sample, rec.cams[c], c, gt, valid)
    for b in gt_boxes(gt, classes):
        _object_seg(sweep, sample, rec.cams[b.cls], b, gt, valid)
    if rcam is not None and classes:
        _rcam_saliency(sweep, rcam, sample, classes, gt, valid)


def _class_seg(sweep: _Sweep, sample: Any, cam: np.ndarray, c: int, gt: np.ndarray, valid: np.ndarray) -> None:
    """The whole image, one class at a time."""
    one = Record(sample, classes=[c], cams={c: cam})
    for i, t in enumerate(sweep.thresholds):
        sweep.class_seg["cam"][i].update(c, cam >= t, gt == c, valid)
        for v in VARIANTS:
            sweep.class_seg[f"gccam {v}"][i].update(c, sweep.cutters[(v, i, "image")].class_masks(one)[c], gt == c, valid)


def _object_seg(sweep: _Sweep, sample: Any, cam: np.ndarray, b: Box, gt: np.ndarray, valid: np.ndarray) -> None:
    """Inside one ground-truth box: naked GrabCut on the box, then CAM and GrabCut-CAM at each t."""
    sl = (slice(b.y0, b.y1), slice(b.x0, b.x1))
    g, ok = (gt == b.cls)[sl], valid[sl]
    sweep.object_seg["grabcut"][0].update(b.cls, grabcut_rect(sample.image, b, sweep.iterations, sweep.margin)[sl], g, ok)
    one = Record(sample, classes=[b.cls], cams={b.cls: cam}, boxes=[b])
    for i, t in enumerate(sweep.thresholds):
        sweep.object_seg["cam"][i].update(b.cls, cam[sl] >= t, g, ok)
        for v in VARIANTS:
            fg = sweep.cutters[(v, i, "box")].class_masks(one)[b.cls][sl]
            sweep.object_seg[f"gccam {v}"][i].update(b.cls, fg, g, ok)


def _rcam_saliency(sweep: _Sweep, rcam: Any, sample: Any, classes: list[int], gt: np.ndarray, valid: np.ndarray) -> None:
    """Each CAM / rCAM stage map of each present class against that class's mask (paper 002)."""
    for c, stages in rcam.maps(sample.image, classes).items():
        target = np.where(valid, (gt == c).astype(np.uint8), IGNORE_INDEX).astype(np.uint8)
        for s, m in stages.items():
            sweep.saliency[s].update(np.clip(m, 0.0, 1.0), target)


def _sweep_result(sweep: _Sweep) -> SweepResult:
    saliency = {}
    for s, meter in sweep.saliency.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = np.where(meter.tp + meter.fp > 0, meter.tp / np.maximum(meter.tp + meter.fp, 1), 0.0)
        recall = meter.tp / max(meter.positives, 1)
        saliency[s] = meter.metrics() | {"F": f_beta(prec, recall).tolist()}
    return SweepResult(sweep.thresholds, {n: [m.metrics() for m in ms] for n, ms in sweep.class_seg.items()},
                       {n: [m.metrics() for m in ms] for n, ms in sweep.object_seg.items()}, saliency)


def format_best_table(result: SweepResult, task: str) -> str:
    """Markdown table shaped like paper 001's Tables 1-2 (x100, technique at its best t).

    mAcc is the mean class recall; the last column is paper 001's mAcc, the mean (TP+TN)/N.
    """
    lines = [f"| Technique | mIoU | fwIoU | mAcc | {BINARY_ACC_TITLE} |", "|---|---:|---:|---:|---:|"]
    for name, (t, m) in result.best(task).items():
        label = name if t is None else f"{name} {t:.1f}"
        lines.append(f"| {label} | {100 * m['mIoU']:.1f} | {100 * m['fwIoU']:.1f} | {100 * m['mAcc']:.1f} "
                     f"| {100 * m['binary_acc']:.1f} |")
    return "\n".join(lines)


def format_saliency_table(result: SweepResult) -> str:
    """Markdown table shaped like paper 002's Table 1 (OIS, ODS, MAE per CAM variant)."""
    names = {"cam1": "CAM_1", "cam2": "CAM_2", "rcam1": "rCAM_1", "rcam2": "rCAM_2", "rcam3": "rCAM_3", "rcam": "rCAM"}
    cols = [s for s in names if s in result.saliency]
    lines = ["| Metric | " + " | ".join(names[s] for s in cols) + " |", "|---|" + "---:|" * len(cols)]
    for key in ("OIS", "ODS", "MAE"):
        lines.append(f"| {key} | " + " | ".join(f"{result.saliency[s][key]:.3f}" for s in cols) + " |")
    return "\n".join(lines)


def plot_sweep(result: SweepResult, out_dir: str | Path) -> list[Path]:
    """Metric-vs-threshold PNGs (paper 001 Figs 7, 8, 10, 11; F-beta curves for paper 002).

    Per task: mIoU, mAcc (mean recall) and paper 001's accuracy (TP+TN)/N, which its Figs 8 and 11
    call mAccuracy.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wsss.utils.io import atomic_path

    out_dir = Path(out_dir)
    paths = []
    for task, title in (("class_seg", "class segmentation"), ("object_seg", "object segmentation")):
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        titles = {"mIoU": "mIoU", "mAcc": "mAcc (mean recall)", "binary_acc": BINARY_ACC_TITLE}
        for ax, (key, ylabel) in zip(axes, titles.items()):
            for name, per_t in getattr(result, task).items():
                ys = [100 * m[key] for m in per_t]
                if len(ys) == 1:
                    ax.axhline(ys[0], ls="--", color="k", label=name)
                else:
                    ax.plot(result.thresholds, ys, marker="o", label=name)
            ax.set_xlabel("threshold t")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: {ylabel}")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        path = out_dir / f"{task}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        paths.append(path)
    if result.saliency:
        fig, ax = plt.subplots(figsize=(5, 4))
        for s, m in result.saliency.items():
            ax.plot(np.linspace(0, 1, len(m["F"])), m["F"], label=s)
        ax.set_xlabel("threshold")
        ax.set_ylabel("F-beta (beta^2 = 0.3), data set")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "rcam_fbeta.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        paths.append(path)
    return paths
