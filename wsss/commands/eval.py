"""Score label maps against ground truth and print a table.

    {prog} CONFIG --pred DIR [--maps DIR] [--split val] [--work-dir DIR] [--set ...]

DIR holds <id>.png class-index maps (palette or grayscale, 255 = ignore) for the images of the
split; the ground truth comes from the config's data set. --maps scores continuous maps
(<id>.npy in [0, 1], HxW or one per class KxHxW, or grayscale <id>.png) with F-beta ODS / OIS and MAE.
Writes <work_dir>/eval.json, eval_per_class.csv, iou_per_class.png and confusion_matrix.png. An image
whose ground-truth mask fails the reader's checks is left out, named, and listed under "skipped".
"""
from __future__ import annotations

import argparse
from pathlib import Path

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)
    group = parser.add_argument_group("evaluation")
    group.add_argument("--pred", help="folder of predicted label PNGs")
    group.add_argument("--maps", help="folder of continuous maps (<id>.npy or grayscale <id>.png) for ODS/OIS/MAE")
    group.add_argument("--split", help="data split to score (default: data.split)")


def run(args: argparse.Namespace) -> None:
    from wsss.data import build_dataset
    from wsss.evaluation import CheckedGT, format_skipped, format_table
    from wsss.evaluation.report import evaluate_dir, write_report
    from wsss.runner import setup

    cfg, work_dir = setup(args)
    if not args.pred and not args.maps:
        raise SystemExit("give --pred (label PNGs) and/or --maps (continuous maps)")
    for flag, folder in (("--pred", args.pred), ("--maps", args.maps)):
        if folder and not Path(folder).is_dir():
            raise SystemExit(f"{flag} {folder}: no such folder")
    dataset = CheckedGT(build_dataset(cfg.data, args.split or cfg.data.split))  # a bad mask skips its image
    metrics = evaluate_dir(args.pred, dataset, cfg.evaluation.pred_ignore, maps_dir=args.maps)
    metrics["skipped"] = dataset.skipped
    if args.pred:
        print(format_table({Path(args.pred).name: metrics}, dataset.class_names, per_class=True))
        fg = metrics["labels_fg"]
        print(f"mDice {100 * metrics['mDice']:.1f}  mPrecision {100 * metrics['mPrecision']:.1f}  "
              f"mRecall {100 * metrics['mRecall']:.1f}  foreground F-beta {fg['ODS']:.3f}  MAE {fg['MAE']:.3f}")
        if metrics["missing"]:
            print(f"{metrics['missing']} images had no prediction and counted as background")
    if args.maps:
        m = metrics["maps_fg"]
        print(f"maps: ODS {m['ODS']:.3f} (threshold {m['ODS_threshold']:.2f})  OIS {m['OIS']:.3f}  MAE {m['MAE']:.3f}"
              + (f"  ({m['missing']} images without a map)" if m["missing"] else ""))
    if dataset.skipped:
        print(format_skipped(dataset.skipped))
    paths = write_report(metrics, work_dir)
    print("report: " + ", ".join(str(p) for p in paths.values()))
