"""Export pseudo-labels for an annotation tool or a training framework (COCO, CVAT, Label Studio, VOC, YOLO).

    {prog} CONFIG --format {coco_polygons,coco_rle,cvat,label_studio,voc,yolo}
        [--out DIR_OR_FILE] [--per-component] [--relative-to DIR] [--pseudo-dir DIR] [--option KEY=VALUE ...]
        [--work-dir DIR] [--set KEY=VALUE ...]

Reads <work_dir>/<pseudo.out>/{manifest.jsonl, labels/} (or --pseudo-dir); class names and image paths
come from the config's data set. file_name is each image's path relative to --relative-to (default: the
bare file name), so it matches what you upload to the tool. Default outputs, under the pseudo dir:
coco_rle.json, coco_polygons.json, cvat_coco/annotations/instances_default.json, label_studio/tasks.json
(+ label_config.xml), voc/, yolo/. --option sets a format's own parameter, e.g. --option val_fraction=0.1
seed=3 images=copy (yolo), tolerance=0 (cvat), url_prefix=/data/local-files/?d= (label_studio),
ignore_value=0 (voc). See docs/export.md.
"""
from __future__ import annotations

import argparse

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wsss.exporters import format_names  # light: the writers import cv2 / pycocotools when they run

    add_config_args(parser)
    add_debug_arg(parser)
    parser.add_argument("--format", required=True, choices=format_names(), help="output format")
    parser.add_argument("--out", help="output file or folder (default: under the pseudo dir, see above)")
    parser.add_argument("--per-component", action="store_true",
                        help="one annotation per 8-connected component instead of one per class")
    parser.add_argument("--relative-to", help="write image file names relative to this folder")
    parser.add_argument("--pseudo-dir", help="pseudo-label folder (default: <work_dir>/<pseudo.out>)")
    parser.add_argument("--option", dest="options", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="a parameter of the format (see docs/export.md), e.g. val_fraction=0.1")


def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> a format's parameters; scalars parse as YAML (0.1, true), anything else stays text."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r}: expected KEY=VALUE")
        parsed = yaml.safe_load(value) if value else ""
        options[key] = value if isinstance(parsed, (dict, list)) or parsed is None else parsed
    return options


def run(args: argparse.Namespace) -> None:
    import os
    from pathlib import Path

    from wsss.data import build_dataset
    from wsss.exporters import export
    from wsss.runner import setup

    options = parse_options(args.options)
    cfg, work_dir = setup(args)
    dataset = build_dataset(cfg.data, cfg.data.split)
    paths, files = {}, {}
    if hasattr(dataset, "image_path"):
        for image_id in dataset.ids:
            p = dataset.image_path(image_id)
            files[image_id] = p
            paths[image_id] = os.path.relpath(p, args.relative_to) if args.relative_to else Path(p).name
    pseudo_dir = Path(args.pseudo_dir) if args.pseudo_dir else work_dir / cfg.pseudo.out
    counts = export(pseudo_dir, args.format, args.out, dataset.class_names, paths, args.per_component,
                    image_files=files, **options)
    extra = f", {counts['annotations']} annotations" if "annotations" in counts else ""
    split = f" (train {counts['train']}, val {counts['val']})" if "val" in counts else ""
    print(f"{counts['images']} images{split}{extra} -> {counts['out']}"
          + (f" ({len(counts['skipped'])} unlabelled or failed images left out)" if counts["skipped"] else ""))
