"""Sweep the threshold t: paper 001's Tables 1-2 (GrabCut-CAM) and paper 002's Table 1 (rCAM).

    python tools/sweep.py --help     # usage, options and details (the same as ``wsss sweep``)

The code lives in wsss/commands/sweep.py, shared with the ``wsss`` command.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.commands import call  # noqa: E402
from wsss.commands import sweep as command  # noqa: E402
from wsss.utils.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int | None:
    return call(command, argv, Path(__file__).name)


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
