"""The ``wsss`` command (also ``python -m wsss``): one subcommand per step, the same code as ``tools/<step>.py``.

Only the selected subcommand's arguments are built, and no command module imports a heavy library
before it runs, so ``wsss --help`` and ``wsss <command> --help`` answer at once.
"""
from __future__ import annotations

import argparse
import sys

from wsss import __version__
from wsss.commands import COMMANDS, EXIT_USAGE, build_parser, load, run_guarded

DESCRIPTION = "wsss: weakly-supervised semantic segmentation and auto-annotation: image-level knowledge in, pixel masks out."
EPILOG = """\
CONFIG is a YAML file or the name of a shipped config (`wsss configs` lists them, `wsss configs copy NAME`
copies one to edit). Paths written in a config are relative to that file's folder; --work-dir defaults to
./work_dirs/<config name> under the current directory; generated data and downloads go to $WSSS_HOME
(default ~/.cache/wsss). `wsss COMMAND --help` shows a command's options; docs/cli.md has the details.

  wsss quickstart                                        # the whole loop on the embedded synthetic set
  wsss gen-pseudo photos --set data.folder.root=DIR      # pseudo-labels for a folder of your photos"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Each command's summary on the command's own line, even for ``train-classifier``."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.nargs == argparse.PARSER:  # argparse sizes the column without the commands' extra indent
            self._action_max_length += 2


def normalise(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` with the subcommand spelled as listed (``gen_pseudo`` -> ``gen-pseudo``), and that subcommand."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            name = arg.replace("_", "-")
            if name in COMMANDS:
                return argv[:i] + [name] + argv[i + 1:], name
            return argv, None
    return argv, None


def build_main_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The ``wsss`` parser: every subcommand with its one-line summary; only ``selected`` gets its arguments."""
    parser = argparse.ArgumentParser(prog="wsss", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"wsss {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, line) in COMMANDS.items():
        child = sub.add_parser(name, help=line, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == selected:
            build_parser(load(name), None, f"wsss {name}", f"-m wsss {name}", parser=child)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, exit with its code."""
    argv, selected = normalise(list(sys.argv[1:] if argv is None else argv))
    parser = build_main_parser(selected)
    args = parser.parse_args(argv)
    if selected is None:  # no subcommand (an unknown one already failed in parse_args)
        parser.print_help(sys.stderr)
        sys.exit(EXIT_USAGE)
    module = load(selected)
    sys.exit(run_guarded(lambda: module.run(args), argv))
