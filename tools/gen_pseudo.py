"""Stage one: pseudo-labels for every image of ``data.split``.

    python tools/gen_pseudo.py --help     # usage, options and details (the same as ``wsss gen-pseudo``)

The code lives in wsss/commands/gen_pseudo.py, shared with the ``wsss`` command.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.commands import call  # noqa: E402
from wsss.commands import gen_pseudo as command  # noqa: E402
from wsss.commands.gen_pseudo import EXIT_FAULT, EXIT_IMAGES_FAILED, EXIT_OK, EXIT_USAGE, summary  # noqa: E402,F401
from wsss.utils.cli import run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return call(command, argv, Path(__file__).name)


if __name__ == "__main__":
    # run_cli: environment faults, missing models and a held lock end as one "error: ..." line, exit 1
    run_cli(lambda: sys.exit(main()))
