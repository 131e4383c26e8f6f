"""Stage two: train the segmentation model on pseudo-labels and score it on the val split.

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--set KEY=VALUE ...]
    torchrun --nproc_per_node N tools/train.py CONFIG [...]      # DDP, one GPU per process

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--resume", action="store_true", help="continue from <work_dir>/<train.out>/last.pth")
    args = parser.parse_args()
    cfg, work_dir = setup(args)
    info = init_distributed(cfg.device)
    try:
        metrics = train(cfg, work_dir, resume=args.resume)
        if info.is_main:
            print(format_table({f"{cfg.model.name} on {cfg.data.val_split}": metrics}))
    finally:
        cleanup(info)


if __name__ == "__main__":
    main()
