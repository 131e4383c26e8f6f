"""Stage two: train the segmentation model on pseudo-labels and score it on the val split.

    {prog} CONFIG [--work-dir DIR] [--resume | --overwrite] [--set KEY=VALUE ...] [--threads N]
    torchrun --nproc_per_node N {script} CONFIG [...]      # DDP, one GPU per process

Over an existing <work_dir>/<train.out>/last.pth the run stops unless --resume (continue it) or
--overwrite (start again, replacing it) says which.

``train.batch_size`` is the global batch: the same config trains the same way on 1 or N GPUs.
"""
from __future__ import annotations

import argparse

from wsss.runner import add_config_args, add_threads_arg
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    add_debug_arg(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--resume", action="store_true", help="continue from <work_dir>/<train.out>/last.pth")
    when.add_argument("--overwrite", action="store_true", help="start again over an existing last.pth / best.pth")
    add_threads_arg(parser)


def run(args: argparse.Namespace) -> None:
    from wsss.distributed import cleanup, init_distributed
    from wsss.evaluation import format_table
    from wsss.runner import set_threads, setup
    from wsss.train import train

    set_threads(args.threads)
    cfg, work_dir = setup(args)
    info = init_distributed(cfg.device)
    try:
        metrics = train(cfg, work_dir, resume=args.resume, overwrite=args.overwrite)
        if info.is_main:
            print(format_table({f"{cfg.model.name} on {cfg.data.val_split}": metrics}))
    finally:
        cleanup(info)
