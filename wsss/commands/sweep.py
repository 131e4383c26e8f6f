"""Sweep the threshold t: paper 001's Tables 1-2 (GrabCut-CAM) and paper 002's Table 1 (rCAM).

    {prog} CONFIG [--work-dir DIR] [--split val] [--limit N] [--iterations 1]
        [--thresholds 0.1 0.2 ...] [--no-rcam] [--set KEY=VALUE ...]

CAMs come from the config's ``cam`` section (its classifier), once per image. rCAM uses
``masks.rcam`` parameters. Writes tables.md, results.json and PNG plots to <work_dir>/sweep/.
"""
from __future__ import annotations

import argparse

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)
    parser.add_argument("--split", help="data split to sweep (default: data.val_split)")
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--iterations", type=int, default=1, help="GrabCut iterations (paper 001: 1)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(1, 10)])
    parser.add_argument("--no-rcam", action="store_true", help="skip paper 002's table")


def run(args: argparse.Namespace) -> None:
    import dataclasses
    import time
    from pathlib import Path

    from wsss.cam import CAM_METHODS
    from wsss.cam.rcam import RCam
    from wsss.classifier import get_classifier
    from wsss.data import build_dataset
    from wsss.experiments.sweep import format_best_table, format_saliency_table, plot_sweep, sweep_dataset
    from wsss.record import Resources
    from wsss.runner import setup
    from wsss.utils.io import write_json_atomic, write_text_atomic
    from wsss.utils.runtime import resolve_device, seed_everything

    cfg, work_dir = setup(args)
    seed_everything(cfg.seed)
    dataset = build_dataset(cfg.data, args.split or cfg.data.val_split)
    resources = Resources(cfg, dataset.class_names, work_dir, resolve_device(cfg.device))
    cam = CAM_METHODS.build(cfg.cam, resources=resources)
    rcam = None if args.no_rcam else RCam(get_classifier(resources), cfg.masks.rcam)
    start = time.perf_counter()
    result = sweep_dataset(dataset, cam, args.thresholds, args.iterations, rcam, args.limit)
    seconds = time.perf_counter() - start
    out = Path(work_dir) / "sweep"
    text = (f"## Class segmentation (paper 001, Table 1)\n\n{format_best_table(result, 'class_seg')}\n\n"
            f"## Object segmentation (paper 001, Table 2)\n\n{format_best_table(result, 'object_seg')}\n")
    if rcam is not None:
        text += f"\n## CAM variants (paper 002, Table 1)\n\n{format_saliency_table(result)}\n"
    print(text)
    write_text_atomic(out / "tables.md", text)
    write_json_atomic(out / "results.json", dataclasses.asdict(result) | {"seconds": seconds})
    for p in plot_sweep(result, out):
        print(f"plot: {p}")
    print(f"{seconds:.0f} s")
