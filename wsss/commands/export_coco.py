"""Export pseudo-labels as a COCO instances json with RLE masks (for CVAT and other annotation tools).

    {prog} CONFIG [--out FILE] [--per-component] [--relative-to DIR] [--work-dir DIR]

Reads <work_dir>/<pseudo.out>/{manifest.jsonl, labels/}; writes <work_dir>/<pseudo.out>/coco_pseudo.json
unless --out is given. file_name is the image path relative to --relative-to (default: the image
folder of each file, i.e. the bare file name), so it matches the folder you upload to the tool.
`wsss export --format coco_rle` writes the same and the other formats.
"""
from __future__ import annotations

import argparse

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)
    parser.add_argument("--out", help="output json (default: <work_dir>/<pseudo.out>/coco_pseudo.json)")
    parser.add_argument("--per-component", action="store_true", help="one annotation per connected component")
    parser.add_argument("--relative-to", help="write file_name relative to this folder")


def run(args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    from wsss.data import build_dataset
    from wsss.exporters import export
    from wsss.runner import setup

    cfg, work_dir = setup(args)
    dataset = build_dataset(cfg.data, cfg.data.split)
    paths = {}
    if hasattr(dataset, "image_path"):
        for image_id in dataset.ids:
            p = dataset.image_path(image_id)
            paths[image_id] = os.path.relpath(p, args.relative_to) if args.relative_to else Path(p).name
    pseudo_dir = work_dir / cfg.pseudo.out
    out = Path(args.out) if args.out else pseudo_dir / "coco_pseudo.json"
    counts = export(pseudo_dir, "coco_rle", out, dataset.class_names, paths, args.per_component)
    print(f"{counts['images']} images, {counts['annotations']} annotations -> {out}"
          + (f" ({len(counts['skipped'])} failed images left out)" if counts["skipped"] else ""))
