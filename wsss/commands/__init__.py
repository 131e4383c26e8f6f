"""The ``wsss`` subcommands: one small module each, with ``add_arguments(parser)`` and ``run(args) -> int | None``.

``tools/<name>.py`` and ``wsss <name>`` are the same code: both build their parser from the module and call
its ``run``. A module's docstring is its help text, in which ``{prog}`` stands for how it was invoked
(``wsss gen-pseudo`` or ``python tools/gen_pseudo.py``) and ``{script}`` for what ``torchrun`` launches
(``-m wsss gen-pseudo`` or ``tools/gen_pseudo.py``).
Only argparse-level code runs when a module is imported: libraries load inside ``run``, so ``--help``
never pays for torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from types import ModuleType

# name -> (module, the one line `wsss --help` shows), in the order of the pipeline
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("wsss.commands.quickstart", "the whole loop on the embedded synthetic set"),
    "configs": ("wsss.commands.configs", "list the shipped configs, or copy one to edit"),
    "train-classifier": ("wsss.commands.train_classifier", "train the classifier on image-level labels"),
    "gen-pseudo": ("wsss.commands.gen_pseudo", "stage one: pseudo-label masks for images"),
    "review": ("wsss.commands.review", "rank pseudo-labels worst first for review"),
    "export": ("wsss.commands.export", "export to COCO, CVAT, Label Studio, VOC or YOLO"),
    "train": ("wsss.commands.train", "stage two: train a segmentation model"),
    "test": ("wsss.commands.test", "predict and score with a trained model"),
    "eval": ("wsss.commands.eval", "score label maps against ground truth"),
    "sweep": ("wsss.commands.sweep", "sweep the CAM threshold (papers 001, 002)"),
    "demo": ("wsss.commands.demo", "the interactive mask generator in a browser"),
}
EXIT_USAGE = 2  # bad arguments, as argparse exits


def load(name: str) -> ModuleType:
    """The module of subcommand ``name`` (``gen-pseudo`` or ``gen_pseudo``)."""
    return importlib.import_module(COMMANDS[name.replace("_", "-")][0])


def help_text(module: ModuleType, prog: str, script: str | None = None) -> str:
    """The module's docstring with ``{prog}`` / ``{script}`` filled in (plain replace: the text has other braces)."""
    return (module.__doc__ or "").replace("{prog}", prog).replace("{script}", script or prog)


def build_parser(module: ModuleType, prog: str | None, usage_prog: str, script: str | None = None,
                 parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``parser`` (or a new one) with the module's help text and arguments."""
    if parser is None:
        parser = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.description = help_text(module, usage_prog, script)
    module.add_arguments(parser)
    return parser


def call(module: ModuleType, argv: list[str] | None, tool: str) -> int | None:
    """What ``tools/<tool>`` runs: parse ``argv`` (default ``sys.argv[1:]``) and return the command's exit code."""
    parser = build_parser(module, tool, f"python tools/{tool}", f"tools/{tool}")
    return module.run(parser.parse_args(argv))


def usage_error(message: str) -> int:
    """One ``error:`` line on stderr for arguments that parse but do not fit together; the usage exit code."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_guarded(fn: Callable[[], int | None], argv: list[str]) -> int:
    """:func:`wsss.utils.cli.run_cli` for an explicit ``argv``: expected errors become one ``error:`` line and
    exit 1, Ctrl-C exits 130, ``--debug`` or ``WSSS_DEBUG=1`` keeps the traceback. Returns the exit code."""
    from wsss.utils.cli import DEBUG_ENV, EXPECTED, debug_enabled, error_message

    try:
        code = fn()
    except KeyboardInterrupt:
        if debug_enabled(argv):
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except EXPECTED as e:
        if debug_enabled(argv):
            raise
        print(f"error: {error_message(e)}", file=sys.stderr)
        print(f"(run with --debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
    return 0 if code is None else int(code)
