"""Predict with a trained stage-two model and score it: whole / sliding window, multi-scale + flip.

    {prog} CONFIG [--checkpoint PATH] [--split val] [--mode slide --crop 512 --stride 341]
        [--scales 0.75 1.0 1.25 1.5] [--flip] [--work-dir DIR] [--set KEY=VALUE ...]
    torchrun --nproc_per_node N {script} CONFIG ...   # images sharded over ranks

Writes <work_dir>/<train.out>/test_<split>/{pred/<id>.png, metrics.json} and prints the table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)
    g = parser.add_argument_group("test")
    g.add_argument("--checkpoint", help="default: <work_dir>/<train.out>/best.pth")
    g.add_argument("--split", help="default: data.val_split")
    g.add_argument("--mode", choices=["whole", "slide"], default="whole")
    g.add_argument("--crop", type=int, default=512)
    g.add_argument("--stride", type=int, default=341)
    g.add_argument("--scales", type=float, nargs="+", default=[1.0])
    g.add_argument("--flip", action="store_true")


def run(args: argparse.Namespace) -> None:
    import numpy as np
    from tqdm import tqdm

    from wsss.classifier.train import load_checkpoint
    from wsss.data import build_dataset
    from wsss.distributed import all_reduce_sum, barrier, cleanup, init_distributed, shard
    from wsss.evaluation import ConfusionMatrix, format_table, metrics_from_confusion
    from wsss.runner import setup
    from wsss.train import build_model
    from wsss.train.inference import TestOptions, predict_tta
    from wsss.train.trainer import model_normalisation
    from wsss.utils.io import write_json_atomic, write_label_png

    cfg, work_dir = setup(args)
    info = init_distributed(cfg.device)
    split = args.split or cfg.data.val_split
    ckpt = Path(args.checkpoint or work_dir / cfg.train.out / "best.pth")
    if not ckpt.is_file():
        raise SystemExit(f"--checkpoint {ckpt}: not found (train first: wsss train CONFIG, or tools/train.py)")
    dataset = build_dataset(cfg.data, split)
    model = build_model(cfg, len(dataset.class_names))
    model.load_state_dict(load_checkpoint(ckpt, ("model",))["model"])  # a corrupt file is named
    model = model.to(info.device).eval()
    mean, std = model_normalisation(cfg)
    opts = TestOptions(args.mode, args.crop, args.stride, tuple(args.scales), args.flip)
    out = work_dir / cfg.train.out / f"test_{split}"
    cm = ConfusionMatrix(len(dataset.class_names))
    for image_id in tqdm(shard(dataset.ids, info), desc="test", unit="img", disable=not info.is_main):
        sample = dataset.load(image_id)
        pred, _ = predict_tta(model, sample.image, mean, std, info.device, opts)
        write_label_png(out / "pred" / f"{image_id}.png", pred)
        if sample.mask is not None:
            cm.update(pred, sample.mask)
    matrix = all_reduce_sum(info, cm.matrix.astype(np.int64))
    barrier(info)
    if info.is_main:
        metrics = metrics_from_confusion(matrix) | {"checkpoint": str(ckpt), "split": split, "options": vars(opts)}
        write_json_atomic(out / "metrics.json", metrics)
        print(format_table({f"{cfg.model.name} {split} ({args.mode}, scales {args.scales}, flip {args.flip})": metrics},
                           dataset.class_names, per_class=True))
        print(f"predictions and report: {out}")
    cleanup(info)
