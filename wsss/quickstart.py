"""``wsss quickstart``: the whole weakly-supervised loop on the embedded synthetic data set.

make data -> train a classifier on image labels -> CAMs -> pseudo-labels (CAM-threshold baseline
and GrabCut-CAM) -> score them -> train DeepLabV3+ on the GrabCut-CAM labels -> score on val.
Every step resumes: a second run reuses what the first finished.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from wsss.config import load_config
from wsss.runner import add_config_args, gen_pseudo, score_pseudo, setup

DEFAULT_CONFIG = "quickstart"  # the shipped config (wsss/configs/quickstart.yaml)


def run(args: argparse.Namespace) -> dict:
    """The whole loop for ``args`` (config, work_dir, overrides); returns the table's rows and wall times."""
    from wsss.classifier import train_classifier
    from wsss.classifier.train import default_checkpoint
    from wsss.data import build_dataset
    from wsss.evaluation import format_table
    from wsss.pseudo.manifest import is_labelled
    from wsss.train import train
    from wsss.utils.io import write_json_atomic

    t_start = time.perf_counter()
    walls: dict[str, float] = {}
    cfg, work_dir = setup(args)

    def step(name: str, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        walls[name] = round(time.perf_counter() - t, 1)
        return out

    step("data", build_dataset, cfg.data, cfg.data.split)
    if not default_checkpoint(work_dir).is_file() or cfg.classifier.timm.checkpoint:
        step("classifier", train_classifier, cfg, work_dir)

    # the CAM-alone baseline: same config, another refiner and output folder (config.yaml keeps the main run's)
    baseline_cfg = load_config(args.config, list(args.overrides) + [
        "masks.name=cam_threshold", "boxes.name=none", "pseudo.out=pseudo_cam_threshold"])
    base_dir, _ = step("pseudo_cam_threshold", gen_pseudo, baseline_cfg, work_dir, desc="CAM-threshold labels")
    gc_dir, records = step("pseudo_grabcut_cam", gen_pseudo, cfg, work_dir, desc="GrabCut-CAM labels")
    rows = {
        f"CAM threshold (t={baseline_cfg.masks.cam_threshold.threshold}) pseudo-labels, {cfg.data.split}":
            score_pseudo(baseline_cfg, base_dir),
        f"GrabCut-CAM {cfg.masks.grabcut_cam.variant} (t={cfg.masks.grabcut_cam.t}) pseudo-labels, {cfg.data.split}":
            score_pseudo(cfg, gc_dir),
    }
    val = step("train", train, cfg, work_dir, resume=True)
    rows[f"DeepLabV3+ trained on GrabCut-CAM labels, {cfg.data.val_split}"] = val
    write_val_overlays(cfg, work_dir, n=6)
    walls["total"] = round(time.perf_counter() - t_start, 1)
    class_names = build_dataset(cfg.data, cfg.data.split).class_names
    table = format_table(rows, class_names, per_class=True)
    failed = sum(not is_labelled(r) for r in records.values())
    print("\n" + table)
    print(f"\nwall time (s): {json.dumps(walls)}")
    print(f"failed images: {failed}; outputs in {work_dir} (overlays: {work_dir / 'overlays'})")
    result = {"rows": {k: {m: v[m] for m in ("mIoU", "fwIoU", "mAcc", "IoU")} for k, v in rows.items()},
              "walls": walls, "table": table}
    write_json_atomic(work_dir / "quickstart.json", result)
    return result


def write_val_overlays(cfg: Any, work_dir: Path, n: int) -> None:
    """image | ground truth | prediction of the best checkpoint, for the first ``n`` val images."""
    import torch

    from wsss.data import build_dataset
    from wsss.train import build_model, predict
    from wsss.train.trainer import model_normalisation
    from wsss.utils.io import write_image
    from wsss.utils.runtime import resolve_device
    from wsss.viz import overlay, panel

    device = resolve_device(cfg.device)
    dataset = build_dataset(cfg.data, cfg.data.val_split)
    model = build_model(cfg, len(dataset.class_names)).to(device).eval()
    ckpt = work_dir / cfg.train.out / "best.pth"
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
    mean, std = model_normalisation(cfg)
    for image_id in dataset.ids[:n]:
        s = dataset.load(image_id)
        pred = predict(model, s.image, mean, std, device)
        tiles = [s.image, overlay(s.image, s.mask) if s.mask is not None else s.image, overlay(s.image, pred)]
        write_image(work_dir / "overlays" / f"{image_id}.png", panel(tiles, ["image", "ground truth", "DeepLabV3+"]))


def main(argv: list[str] | None = None) -> None:
    """``wsss quickstart`` without the command's error handling (the tests call this)."""
    parser = argparse.ArgumentParser(prog="wsss quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, config_required=False)
    args = parser.parse_args(argv)
    args.config = args.config or DEFAULT_CONFIG
    run(args)
