"""Stage one: pseudo-labels for every image of ``data.split``.

    {prog} CONFIG [--work-dir DIR] [--set KEY=VALUE ...] [--allow-failures] [--threads N]
    torchrun --nproc_per_node N {script} CONFIG [...]   # N ranks, one GPU each

Batched (the same labels; faster on a GPU with free cores): --set pseudo.batch_size=16 pseudo.workers=8
(images decode ahead in a DataLoader, the classifier and Grad-CAM take 16 images per call on a GPU,
GrabCut and PNG writing run in 8 worker threads); see docs/training.md.

Writes <work_dir>/<pseudo.out>/{labels/*.png, manifest.jsonl, overlays/}; a rerun resumes (images
whose manifest status is ok or low_confidence and whose PNG exists are skipped; failed ones are
retried). Under torchrun each rank labels every N-th image into manifest.rank<r>.jsonl and rank 0
merges the parts into manifest.jsonl at the end. While a run works in a folder it holds
<pseudo.out>/.lock (PID and host); a second run on that folder stops at once, and a lock left by a
killed run is taken over.

Manifest status of each image: ok (labelled); low_confidence (labelled, but the classifier was unsure:
counts as labelled); error (not labelled; the line says why, e.g. a corrupt image file).

Exit codes:
    0  every image labelled (ok or low_confidence), or some failed and --allow-failures was given
    1  the run stopped: the outputs cannot be written (permission denied, disk full or over quota,
       read-only file system), a model or checkpoint is missing or cannot be loaded, another run holds
       the folder's .lock, or another crash. One line on stderr says what and where (--debug: traceback)
    2  usage or config error: bad arguments or config keys, or the folder holds labels made with a
       different config (use another --work-dir or --set pseudo.overwrite=true)
    3  the run finished but some images failed (status error); the summary names them
  130  interrupted (Ctrl-C)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsss.runner import add_config_args, add_threads_arg
from wsss.utils.cli import add_debug_arg

EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_IMAGES_FAILED = 0, 1, 2, 3
MAX_LISTED = 20  # failed images named in the summary; the manifest has them all


def summary(records: dict[str, dict], out_dir: Path) -> tuple[list[str], int]:
    """The lines to print after a run, and how many images failed."""
    from wsss.pseudo.manifest import is_labelled

    failed = [r for r in records.values() if not is_labelled(r)]
    unsure = [r["image"] for r in records.values() if r.get("status") == "low_confidence"]
    lines = [f"{len(records) - len(failed)} images labelled, {len(failed)} failed -> {out_dir}"]
    if unsure:
        lines.append(f"  {len(unsure)} labelled with low classifier confidence (status low_confidence in the "
                     f"manifest), e.g. {', '.join(unsure[:5])}")
    for r in failed[:MAX_LISTED]:
        lines.append(f"  {r['image']}: {r.get('error')}")
    if len(failed) > MAX_LISTED:
        lines.append(f"  ... and {len(failed) - MAX_LISTED} more (status error in {out_dir / 'manifest.jsonl'})")
    return lines, len(failed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)
    parser.add_argument("--no-eval", action="store_true", help="do not score against ground truth masks")
    parser.add_argument("--allow-failures", action="store_true",
                        help=f"exit 0 even if some images failed (default: exit {EXIT_IMAGES_FAILED})")
    add_threads_arg(parser)


def run(args: argparse.Namespace) -> int:
    from wsss.distributed import cleanup, init_distributed
    from wsss.evaluation import format_skipped, format_table
    from wsss.pseudo.pipeline import ConfigMismatch
    from wsss.runner import gen_pseudo_sharded, score_pseudo, set_threads, setup

    try:
        set_threads(args.threads)
        cfg, work_dir = setup(args)
    except SystemExit as e:  # setup reports a config error as SystemExit(message), which would exit 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return EXIT_USAGE
        raise
    info = init_distributed(cfg.device)
    try:
        try:
            out_dir, records = gen_pseudo_sharded(cfg, work_dir)
        except ConfigMismatch as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        if not info.is_main:
            return EXIT_OK
        lines, failed = summary(records, out_dir)
        print("\n".join(lines))
        if not args.no_eval:
            metrics = score_pseudo(cfg, out_dir)
            if metrics["matrix"] and sum(map(sum, metrics["matrix"])):
                print(format_table({f"pseudo-labels ({cfg.masks.name})": metrics}))
            if metrics.get("skipped"):
                print(format_skipped(metrics["skipped"]))
        if failed and not args.allow_failures:
            print(f"{failed} images failed: exit {EXIT_IMAGES_FAILED} (--allow-failures to accept)", file=sys.stderr)
            return EXIT_IMAGES_FAILED
        return EXIT_OK
    finally:
        cleanup(info)
