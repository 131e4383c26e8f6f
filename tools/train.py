"""Stage two: train the segmentation model on pseudo-labels and score it on the val split.

    python tools/train.py CONFIG [--work-dir DIR] [--resume | --overwrite] [--set KEY=VALUE ...]
    torchrun --nproc_per_node N tools/train.py CONFIG [...]      # DDP, one GPU per process

Over an existing <work_dir>/<train.out>/last.pth the run stops unless --resume (continue it) or
--overwrite (start again, replacing it) says which.

``train.batch_size`` is the global batch: the same config trains the same way on 1 or N GPUs.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.distributed import cleanup, init_distributed  # noqa: E402
from wsss.evaluation import format_table  # noqa: E402
from wsss.runner import add_config_args, setup  # noqa: E402
from wsss.train import train  # noqa: E402
from wsss.utils.cli import add_debug_arg, run_cli  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    add_debug_arg(parser)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--resume", action="store_true", help="continue from <work_dir>/<train.out>/last.pth")
    when.add_argument("--overwrite", action="store_true", help="start again over an existing last.pth / best.pth")
    args = parser.parse_args()
    cfg, work_dir = setup(args)
    info = init_distributed(cfg.device)
    try:
        metrics = train(cfg, work_dir, resume=args.resume, overwrite=args.overwrite)
        if info.is_main:
            print(format_table({f"{cfg.model.name} on {cfg.data.val_split}": metrics}))
    finally:
        cleanup(info)


if __name__ == "__main__":
    run_cli(main)
