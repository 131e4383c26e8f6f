"""Export pseudo-labels as a COCO instances json with RLE masks (for CVAT and other annotation tools).

    python tools/export_coco.py --help     # usage, options and details (``wsss export --format coco_rle`` writes the same)

The code lives in wsss/commands/export_coco.py, shared with the ``wsss`` command.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.commands import call  # noqa: E402
from wsss.commands import export_coco as command  # noqa: E402
from wsss.utils.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int | None:
    return call(command, argv, Path(__file__).name)


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
