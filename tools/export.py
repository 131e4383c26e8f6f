"""Export pseudo-labels for an annotation tool or a training framework (COCO, CVAT, Label Studio, VOC, YOLO).

    python tools/export.py --help     # usage, options and details (``wsss export`` is the same)

The code lives in wsss/commands/export.py, shared with the ``wsss`` command.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.commands import call  # noqa: E402
from wsss.commands import export as command  # noqa: E402
from wsss.utils.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int | None:
    return call(command, argv, Path(__file__).name)


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
