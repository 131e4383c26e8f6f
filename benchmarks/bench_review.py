"""How well the review queue's quality estimate ranks real pseudo-labels (no ground truth used by the estimate).

    OMP_NUM_THREADS=1 python benchmarks/bench_review.py [--data ../shared/data/coco_dev] [--fit]
        [--out work_dirs/bench_review] [--set KEY=VALUE ...]

Runs the photo route class-agnostically over a real set (``benchmarks/bench_quality.py``'s ``object``
setting; ``--set cam.gradcam.road=true`` adds the ROAD feature, at several times the CPU cost), caches what each image's stages
produced to ``--out/raw/<id>.npz`` (a rerun reads the cache: no model runs), and prints on the **held**
half (odd sorted positions) the Spearman correlation between ``wsss.pseudo.quality.quality_estimate``
and the true per-image foreground IoU, plus the mean IoU of the best and worst 50 % by estimate.

``--fit`` refits the logistic weights on the **dev** half (even positions) only and prints them as the
constants to paste into ``wsss/pseudo/quality.py``; the held half is never used for fitting.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsss.data.base import Box  # noqa: E402
from wsss.pseudo.quality import FEATURES, fit_logistic, quality_estimate, quality_features  # noqa: E402
from wsss.record import Record  # noqa: E402

ROAD: list[str] = []  # the route as it ships (ROAD off); the shipped weights were fitted this way


def _bench_quality() -> ModuleType:
    """benchmarks/ is no package: load bench_quality by path to reuse its split, overrides and IoU."""
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "benchmarks" / "bench_quality.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def extract(data: Path, out: Path, extra: list[str], reverse: bool = False) -> list[str]:
    """Run the photo route over ``data`` and cache each image's stage outputs (a rerun skips cached ids)."""
    import torch

    from wsss.config import load_config
    from wsss.data import build_dataset
    from wsss.pseudo.pipeline import PseudoLabeler
    from wsss.record import Resources
    from wsss.utils.runtime import seed_everything

    bq = _bench_quality()
    cfg = load_config(str(bq.PHOTOS), bq.set_overrides(data, "object") + ROAD + extra)
    dataset = build_dataset(cfg.data, cfg.data.split)
    ids = sorted(dataset.ids)
    raw = out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    todo = [i for i in ids if not (raw / f"{i}.npz").is_file()]
    if todo:
        labeler = PseudoLabeler(cfg, Resources(cfg, dataset.class_names, out, torch.device("cpu")))
        for n, i in enumerate(todo[::-1] if reverse else todo):
            if (raw / f"{i}.npz").is_file():  # another extract process got there first
                continue
            t = time.perf_counter()
            seed_everything(0)
            sample = dataset.load(i)
            rec = labeler.process(Record(sample))
            meta = {"classes": rec.classes, "scores": {str(c): s for c, s in rec.scores.items()},
                    "boxes": [[b.cls, *b.as_list(), b.score] for b in rec.boxes], "extras": rec.extras,
                    "sam_cam_match": rec.cache.get("sam_cam_match"), "cam_classes": list(rec.cams)}
            cams = np.stack([rec.cams[c] for c in rec.cams]).astype(np.float16) if rec.cams else np.zeros((0, 1, 1))
            tmp = raw / f".{i}.tmp.npz"  # atomic: a killed run leaves no half-written cache entry
            np.savez_compressed(tmp, meta=json.dumps(meta), cams=cams, label_map=rec.label_map, gt=sample.mask)
            tmp.replace(raw / f"{i}.npz")
            print(f"  [{len(ids) - len(todo) + n + 1}/{len(ids)}] {i} {time.perf_counter() - t:.1f}s", flush=True)
    return ids


def load_record(path: Path) -> tuple[Record, np.ndarray]:
    """A Record rebuilt from the cache (image left out: the features do not look at pixels), and the truth."""
    from wsss.data.base import Sample

    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    label_map = z["label_map"]
    sample = Sample(id=path.stem, image=np.zeros((*label_map.shape, 3), np.uint8), mask=None)
    rec = Record(sample, classes=list(meta["classes"]), scores={int(c): s for c, s in meta["scores"].items()},
                 cams={c: m.astype(np.float32) for c, m in zip(meta["cam_classes"], z["cams"])},
                 boxes=[Box(int(b[0]), *map(int, b[1:5]), float(b[5])) for b in meta["boxes"]],
                 label_map=label_map, extras=meta["extras"])
    if meta.get("sam_cam_match") is not None:
        rec.cache["sam_cam_match"] = meta["sam_cam_match"]
    return rec, z["gt"]


def spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation with average ranks for ties (no scipy needed)."""
    def ranks(x: list[float]) -> np.ndarray:
        x_arr = np.asarray(x, float)
        order = np.argsort(x_arr, kind="mergesort")
        r = np.empty(len(x_arr))
        r[order] = np.arange(len(x_arr))
        for v in np.unique(x_arr):  # ties share their mean rank
            r[x_arr == v] = r[x_arr == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def halves(estimates: list[float], ious: list[float]) -> tuple[float, float]:
    """Mean true IoU of the best 50 % and of the worst 50 % by estimate."""
    order = np.argsort(estimates)
    k = len(order) // 2
    iou = np.asarray(ious)
    return float(iou[order[len(order) - k:]].mean()), float(iou[order[:k]].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "coco_dev"))
    parser.add_argument("--out", default=str(ROOT / "work_dirs" / "bench_review"))
    parser.add_argument("--fit", action="store_true", help="refit the weights on the dev half and print them")
    parser.add_argument("--reverse", action="store_true", help="extract from the last id (a second process)")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], help="config overrides")
    args = parser.parse_args()
    out = Path(args.out)
    ids = extract(Path(args.data), out, args.overrides, args.reverse)
    bq = _bench_quality()
    splits = bq.dev_held(ids)
    feats: dict[str, dict[str, float]] = {}
    ious: dict[str, float] = {}
    for i in ids:
        rec, gt = load_record(out / "raw" / f"{i}.npz")
        feats[i], ious[i] = quality_features(rec), bq.fg_iou(rec.label_map, gt)
    weights: dict[str, Any] | None = None
    if args.fit:
        dev = sorted(splits["dev"])
        weights = fit_logistic([feats[i] for i in dev], [ious[i] for i in dev])
        print("fitted on dev (paste into wsss/pseudo/quality.py):")
        print(json.dumps(weights, indent=1))
    rows = {}
    for name in ("dev", "held", "all"):
        members = sorted(splits[name])
        est = [quality_estimate(feats[i], weights) for i in members]
        iou = [ious[i] for i in members]
        best, worst = halves(est, iou)
        rows[name] = {"images": len(members), "spearman": spearman(est, iou), "mean_iou": float(np.mean(iou)),
                      "best_half_iou": best, "worst_half_iou": worst}
    single = {f: spearman([feats[i][f] for i in sorted(splits["held"])], [ious[i] for i in sorted(splits["held"])])
              for f in FEATURES}
    print("held-half Spearman of each feature alone: "
          + ", ".join(f"{f} {v:+.2f}" for f, v in single.items()))
    print("| half | images | Spearman(estimate, fg-IoU) | mean fg-IoU | best 50 % | worst 50 % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['images']} | {r['spearman']:.3f} | {r['mean_iou']:.3f} | {r['best_half_iou']:.3f} | "
              f"{r['worst_half_iou']:.3f} |")
    (out / "results.json").write_text(json.dumps({"rows": rows, "single_feature_spearman_held": single,
                                                  "per_image": {i: {"iou": ious[i], "features": feats[i]} for i in ids}},
                                                 indent=1))


if __name__ == "__main__":
    main()
