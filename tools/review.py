"""Review queue for a stage-one output folder: pseudo-labels ranked worst first by their quality estimate.

    python tools/review.py --help     # usage, options and details (the same as ``wsss review``)

The code lives in wsss/commands/review.py, shared with the ``wsss`` command.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.commands import call  # noqa: E402
from wsss.commands import review as command  # noqa: E402
from wsss.utils.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return call(command, argv, Path(__file__).name)


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
