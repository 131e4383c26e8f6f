"""Pseudo-label quality on real images with human masks, side by side with the plain baseline.

    OMP_NUM_THREADS=1 python benchmarks/bench_quality.py [--data ../shared/data] [--sets coco_dev]
        [--methods baseline,cam_threshold,grabcut_cam,grabcut_box,rcam] [--modes object,classes]
        [--synthetic 40] [--limit N] [--sam-checkpoint PATH] [--out work_dirs/bench_quality] [--set KEY=VALUE ...]

Every real set is a folder of ``--data`` in wsss's ``folder`` layout (``images/``, ``masks/``,
``classes.txt``, optional ``labels.json``). Two settings:

- ``object``: class-agnostic, the photo route as it ships (``configs/photos.yaml``: the bundled ImageNet
  classifier, one class "object" localised by the top-3 ImageNet categories, labels from the classifier).
  Scored as mean per-image foreground IoU (any class vs background; 255 of the mask left out) and mIoU of
  the two classes.
- ``classes``: weakly supervised, the image labels given; each class name is mapped to ImageNet categories
  through WordNet (names with none are localised as "object"). Scored as mIoU over the classes.

The baseline is the plainest composition of the same parts: Grad-CAM of the top-1 ImageNet class on
``conv_head`` at 224 px, one box around all CAM >= 0.5, ``cv2.grabCut`` in rectangle mode, 5 iterations.

Images are split by sorted id: even positions are the **dev** half (where wsss's photo defaults were
chosen), odd positions the **held-out** half (never tuned on). Figures are printed for both and for all.
The embedded synthetic set (``--synthetic N`` val images, 0 = skip) runs the same object route; it is a
smoke test, not evidence. CPU s/img is process time (set OMP_NUM_THREADS=1 on a shared machine).
Writes ``results.json``, ``results.md`` and an overlay grid per set and setting to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.classifier import get_classifier  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.data import build_dataset  # noqa: E402
from wsss.evaluation.metrics import ConfusionMatrix  # noqa: E402
from wsss.pseudo.pipeline import PseudoLabeler  # noqa: E402
from wsss.record import Record, Resources  # noqa: E402
from wsss.utils.io import write_image, write_json_atomic, write_text_atomic  # noqa: E402
from wsss.utils.runtime import seed_everything  # noqa: E402
from wsss.viz import overlay, panel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "configs" / "photos.yaml"

# each wsss method is the photo route with these overrides
METHODS: dict[str, list[str]] = {
    "cam_threshold": ["masks.name=cam_threshold"],
    "grabcut_cam": [],  # the photo route's default
    "grabcut_box": ["masks.name=grabcut_box"],
    "rcam": ["cam.name=rcam", "boxes.name=none", "masks.name=rcam"],
    "sam_cam_match": ["masks.name=sam_cam_match"],
    "sam_box": ["masks.name=sam_box"],
}
SAM_METHODS = ("sam_cam_match", "sam_box")


class PlainBaseline:
    """ImageNet Lite0 -> Grad-CAM on conv_head at 224 px -> one box at CAM >= 0.5 -> GrabCut rectangle x5.

    Class-agnostic (``per_class=False``): the CAM of the top-1 ImageNet category, painted as class 1.
    With the labels given (``per_class=True``): the same per labelled class, with the class's ImageNet
    categories as the Grad-CAM target; overlaps go to the higher CAM.
    """

    def __init__(self, resources: Resources, per_class: bool) -> None:
        from pytorch_grad_cam import GradCAM

        self.clf = get_classifier(resources)
        self.cam = GradCAM(self.clf.model, [self.clf.model.get_submodule("conv_head")])
        self.per_class = per_class

    def __call__(self, rec: Record) -> np.ndarray:
        import torch
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from wsss.masks import compose_label_map

        image = rec.image
        h, w = image.shape[:2]
        x = self.clf.preprocess([image], 224)
        if self.per_class:
            classes = list(rec.sample.labels or [])
            targets = [self.clf.target(c) for c in classes]
        else:
            with torch.no_grad():
                classes, targets = [1], [ClassifierOutputTarget(int(self.clf.model(x)[0].argmax()))]
        if not classes:
            return np.zeros((h, w), np.uint8)
        cams = self.cam(input_tensor=x.repeat(len(classes), 1, 1, 1), targets=targets)
        masks, conf = {}, {}
        for c, cam in zip(classes, cams):
            cam = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
            cam = (cam - cam.min()) / max(float(cam.max() - cam.min()), 1e-8)
            masks[c], conf[c] = self.grabcut(image, cam >= 0.5), cam
        return compose_label_map((h, w), masks, conf)

    @staticmethod
    def grabcut(image: np.ndarray, inside: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        ys, xs = np.nonzero(inside)
        if len(xs) == 0:
            return inside
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        if (x0, y0, x1, y1) == (0, 0, w, h):  # GrabCut needs some background outside the rectangle
            x0, y0, x1, y1 = 1, 1, w - 1, h - 1
        mask = np.zeros((h, w), np.uint8)
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, 5,
                    cv2.GC_INIT_WITH_RECT)
        return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))


def dev_held(ids: list[str]) -> dict[str, set[str]]:
    """The fixed split of a real set: even positions of the sorted ids are dev, odd are held out."""
    ordered = sorted(ids)
    return {"dev": set(ordered[::2]), "held": set(ordered[1::2]), "all": set(ordered)}


def fg_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground (any class) IoU with the mask's 255 left out; 1.0 when both are empty."""
    valid = gt != 255
    g, p = (gt > 0) & valid, (pred > 0) & (pred != 255) & valid
    union = int((g | p).sum())
    return float((g & p).sum()) / union if union else 1.0


def set_overrides(data_root: Path, mode: str) -> list[str]:
    """The photo route on one real set, class-agnostic (``object``) or with the given labels (``classes``)."""
    sets = [f"data.folder.root={data_root}", "data.split=all"]
    if mode == "object":
        return sets + ["data.folder.merge_classes=true", "data.folder.class_names=[background, object]"]
    return sets + ["data.folder.class_names=null", "labels.name=given", "classifier.imagenet_lite0.unmapped=object"]


def synthetic_overrides(limit: int) -> list[str]:
    """The embedded set's val split (generated on first use) as a class-agnostic folder."""
    from wsss.data.synthetic import SyntheticParams, generate

    root = generate(SyntheticParams())
    return [f"data.folder.root={root}", "data.split=val", "data.folder.merge_classes=true",
            "data.folder.class_names=[background, object]"]


def method_config(base: list[str], method: str, sam_checkpoint: str | None) -> object:
    overrides = base + list(METHODS.get(method, []))
    if method in SAM_METHODS:
        overrides.append(f"masks.{method}.model.checkpoint={sam_checkpoint}")
    return load_config(str(PHOTOS), overrides)


def run_setting(name: str, base: list[str], methods: list[str], limit: int, sam_checkpoint: str | None,
                out_dir: Path, grid_rows: int, only: str | None = None) -> dict:
    """Every method over one set in one setting; per-split scores, CPU time and an overlay grid."""
    import torch

    base_cfg = method_config(base, "grabcut_cam", None)
    dataset = build_dataset(base_cfg.data, base_cfg.data.split)
    ids = sorted(dataset.ids)[:limit] if limit else sorted(dataset.ids)
    splits = dev_held(ids)
    if only:  # e.g. only the dev half while choosing defaults
        ids = sorted(splits[only])
        splits = {k: v & set(ids) for k, v in splits.items()}
    num_classes = len(dataset.class_names)
    resources = Resources(base_cfg, dataset.class_names, out_dir, torch.device("cpu"))  # the classifier loads once
    samples = {i: dataset.load(i) for i in ids}
    grid_ids = sorted(splits["held"] or splits["dev"])[:grid_rows]
    tiles: dict[str, list[np.ndarray]] = {i: [samples[i].image, overlay(samples[i].image, samples[i].mask)] for i in grid_ids}
    results = {}
    for method in methods:
        if method == "baseline":
            run = PlainBaseline(resources, per_class=not name.endswith('object'))
        else:
            cfg = method_config(base, method, sam_checkpoint)
            resources.cfg = cfg
            labeler = PseudoLabeler(cfg, resources)
            run = labeler.process
        per_image, cms = {}, {s: ConfusionMatrix(num_classes) for s in splits}
        cpu, wall = time.process_time(), time.perf_counter()
        for i in ids:
            seed_everything(0)
            rec = Record(samples[i])
            out = run(rec)
            pred = out if isinstance(out, np.ndarray) else rec.label_map
            per_image[i] = fg_iou(pred, samples[i].mask)
            for s, members in splits.items():
                if i in members:
                    cms[s].update(pred, samples[i].mask)
            if i in tiles:
                tiles[i].append(overlay(samples[i].image, pred))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        row = {"cpu_s_per_image": cpu / len(ids), "wall_s": wall, "per_image_fg_iou": per_image}
        for s, members in splits.items():
            row[s] = {"fg_iou": float(np.mean([per_image[i] for i in members])) if members else float("nan"),
                      "mIoU": float(cms[s].metrics()["mIoU"]) if members else float("nan")}
        results[method] = row
        print(f"  {name:28s} {method:14s} fg-IoU dev {row['dev']['fg_iou']:.3f} held {row['held']['fg_iou']:.3f} "
              f"all {row['all']['fg_iou']:.3f} | mIoU all {100 * row['all']['mIoU']:.1f} | {row['cpu_s_per_image']:.2f} CPU s/img",
              flush=True)
    if grid_ids:
        rows = [panel(tiles[i], ["image", "ground truth"] + methods) for i in grid_ids]
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        write_image(out_dir / f"grid_{name.replace(' ', '_').replace('/', '_')}.jpg", np.concatenate(rows, 0))
    return {"images": len(ids), "num_classes": num_classes, "methods": results}


def markdown(all_results: dict) -> str:
    lines = []
    for name, res in all_results.items():
        agnostic = name.endswith("object")
        key = "fg_iou" if agnostic else "mIoU"
        title = "mean fg-IoU" if agnostic else "mIoU (%)"
        lines += [f"### {name} ({res['images']} images)", "",
                  f"| method | {title} dev | {title} held out | {title} all | mIoU all (%) | CPU s/img |",
                  "|---|---:|---:|---:|---:|---:|"]
        for method, row in res["methods"].items():
            fmt = (lambda v: f"{v:.3f}") if agnostic else (lambda v: f"{100 * v:.1f}")
            lines.append(f"| {method} | {fmt(row['dev'][key])} | {fmt(row['held'][key])} | {fmt(row['all'][key])} | "
                         f"{100 * row['all']['mIoU']:.1f} | {row['cpu_s_per_image']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder of real sets")
    parser.add_argument("--sets", default=None, help="comma-separated set names (default: every set found)")
    parser.add_argument("--methods", default="baseline,cam_threshold,grabcut_cam,grabcut_box,rcam")
    parser.add_argument("--modes", default="object,classes")
    parser.add_argument("--synthetic", type=int, default=40, help="embedded val images to add (0 = none)")
    parser.add_argument("--limit", type=int, default=0, help="first N images of each set (0 = all)")
    parser.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint: adds sam_cam_match and sam_box")
    parser.add_argument("--only", choices=["dev", "held"], help="run one half of each real set only")
    parser.add_argument("--grid", type=int, default=6, help="held-out images in each overlay grid")
    parser.add_argument("--out", default=str(ROOT / "work_dirs" / "bench_quality"))
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides for every method")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if args.sam_checkpoint:
        methods += [m for m in SAM_METHODS if m not in methods]
    unknown = [m for m in methods if m != "baseline" and m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from baseline, {', '.join(METHODS)}")
    if any(m in SAM_METHODS for m in methods) and not args.sam_checkpoint:
        raise SystemExit("--methods: the SAM refiners need --sam-checkpoint PATH")
    data = Path(args.data)
    found = sorted(p.name for p in data.iterdir() if (p / "images").is_dir() and (p / "masks").is_dir()) if data.is_dir() else []
    names = args.sets.split(",") if args.sets else found
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"--sets: {missing} not found under {data} (found: {found})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_results = {}
    for n in names:
        for mode in args.modes.split(","):
            base = set_overrides(data / n, mode) + args.overrides
            all_results[f"{n} {mode}"] = run_setting(f"{n} {mode}", base, methods, args.limit, args.sam_checkpoint, out,
                                                     args.grid, args.only)
    if args.synthetic:
        base = synthetic_overrides(args.synthetic) + args.overrides
        all_results["synthetic object"] = run_setting("synthetic object", base, methods, args.synthetic,
                                                      args.sam_checkpoint, out, args.grid)
    write_json_atomic(out / "results.json", all_results)
    write_text_atomic(out / "results.md", markdown(all_results))
    print("\n" + markdown(all_results))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
