"""Import corrected labels (COCO json from CVAT & co, or Label Studio's JSON export) as a pseudo dir to train on.

    python tools/import_labels.py JSON OUT_DIR (--classes-from CONFIG [--set KEY=VALUE ...] | --classes A,B,...)

Writes OUT_DIR/labels/<id>.png (class indices, uncovered pixels = background), OUT_DIR/manifest.jsonl
(status ok; merged over an existing one) and OUT_DIR/import.json. Train on it with
--set train.labels_dir=OUT_DIR/labels. Class names come from the config's data set (first = background)
or --classes; COCO categories / Label Studio labels are matched by name. The format is told apart by
the file's shape (COCO: a mapping with "images"; Label Studio: a list of tasks). See docs/export.md.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.utils.cli import add_debug_arg, run_cli  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels_json", help="COCO instances json (polygons or RLE) or Label Studio JSON export")
    parser.add_argument("out_dir", help="folder to write labels/ and manifest.jsonl into")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--classes-from", metavar="CONFIG", help="take the class names from this config's data set")
    source.add_argument("--classes", help="comma-separated class names, background first")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides for --classes-from (e.g. data.kvasir_seg.root=DIR)")
    add_debug_arg(parser)
    args = parser.parse_args()
    from wsss.exporters.imports import import_labels

    if args.classes:
        class_names = [c.strip() for c in args.classes.split(",")]
    else:
        from wsss.config import ConfigError, load_config
        from wsss.data import build_dataset

        try:
            cfg = load_config(args.classes_from, args.overrides)
        except ConfigError as e:
            raise SystemExit(f"config error: {e}") from None
        class_names = build_dataset(cfg.data, cfg.data.split).class_names
    counts = import_labels(args.labels_json, args.out_dir, class_names)
    notes = [f"{counts['no_mask']} annotations without a mask ignored"] if counts["no_mask"] else []
    notes += [f"{counts[k]} tasks {what}" for k, what in (("unreviewed", "nobody annotated left out"),
                                                           ("no_size", "without an image size left out")) if counts.get(k)]
    print(f"{counts['format']}: {counts['images']} images, {counts['annotations']} masks -> {counts['out']}/labels"
          + (f" ({'; '.join(notes)})" if notes else ""))


if __name__ == "__main__":
    run_cli(main)
