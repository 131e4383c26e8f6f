"""Review queue for a stage-one output folder: pseudo-labels ranked worst first by their quality estimate.

    {prog} PSEUDO_DIR [--out DIR] [--images DIR] [--threshold T [--trusted]] [--thumb PX]

PSEUDO_DIR is what ``wsss gen-pseudo`` (tools/gen_pseudo.py) wrote (``labels/``, ``manifest.jsonl``). Writes to ``--out``
(default PSEUDO_DIR/review): ``queue.csv`` (worst first) and ``index.html`` (contact sheet of overlays with
their estimates; photos looked up as ``<images>/<id>.*`` or ``<images>/images/<id>.*`` when --images is
given, else the label colours alone). ``--threshold T``: ids with an estimate below T (or none) go to
``needs_review.txt``; with ``--trusted`` the label PNGs of the others are copied to ``trusted/labels/``
for stage two: ``wsss train CONFIG --set train.labels_dir=<out>/trusted/labels``.
See docs/review.md.
"""
from __future__ import annotations

import argparse
import sys

from wsss.commands import usage_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pseudo_dir", help="stage-one output folder holding manifest.jsonl and labels/")
    parser.add_argument("--out", default=None, help="where to write the queue (default PSEUDO_DIR/review)")
    parser.add_argument("--images", default=None, help="the photos, for overlay thumbnails")
    parser.add_argument("--threshold", type=float, default=None, help="estimates below this need review")
    parser.add_argument("--trusted", action="store_true", help="copy labels at or above --threshold to trusted/labels")
    parser.add_argument("--thumb", type=int, default=200, help="thumbnail size in pixels")


def run(args: argparse.Namespace) -> int:
    if args.trusted and args.threshold is None:
        return usage_error("--trusted needs --threshold")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return usage_error("--threshold must be in [0, 1]")
    from wsss.pseudo.review import build_review

    try:
        s = build_review(args.pseudo_dir, args.out, args.threshold, args.trusted, args.images, args.thumb)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{s['images']} images ranked worst first -> {s['csv']}, {s['html']}")
    if s["without_estimate"]:
        print(f"  {s['without_estimate']} without a quality estimate (manifest from before the estimate): listed first")
    if "needs_review" in s:
        print(f"  {s['needs_review']} below {args.threshold:g} -> {s['needs_review_txt']}")
    if "trusted_labels" in s:
        print(f"  trusted labels -> {s['trusted_labels']} (stage two: --set train.labels_dir={s['trusted_labels']})")
    return 0
