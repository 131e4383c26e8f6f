"""One-line errors for the command-line tools: ``run_cli(main)`` instead of ``main()``.

Expected failures (a missing folder or file, a bad mask, a corrupt checkpoint, an unwritable work dir)
are raised deep inside the library as ``OSError`` / ``ValueError`` / ``RuntimeError`` / ``KeyError`` with
a message naming the file or key. Users need that message, not the 5-10 frames above it, so the tools
print ``error: <message>`` on stderr and exit 1. ``--debug`` (see :func:`add_debug_arg`) or the
environment variable ``WSSS_DEBUG=1`` re-raises with the full traceback. Other exception types are
programming errors and always keep their traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXPECTED = (OSError, ValueError, RuntimeError, KeyError)  # OSError covers FileNotFound-, Permission-, FileExistsError
DEBUG_ENV = "WSSS_DEBUG"


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    """``--debug``: listed in ``--help``; :func:`run_cli` reads it from ``sys.argv`` (before parsing can fail)."""
    parser.add_argument("--debug", action="store_true", help=f"show the full traceback on errors (or {DEBUG_ENV}=1)")


def debug_enabled(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def error_message(e: BaseException) -> str:
    """What went wrong, in one line, naming the file or key."""
    if isinstance(e, PermissionError) and e.filename:
        return f"{e.filename}: permission denied; choose a writable folder (e.g. --work-dir DIR) or fix its permissions"
    if isinstance(e, OSError) and e.filename and e.strerror:  # raw OS errors: "[Errno 2] ..." -> "path: reason"
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, KeyError) and len(e.args) == 1:  # str(KeyError('x')) is just "'x'"
        key = e.args[0]
        return key if isinstance(key, str) and " " in key else f"missing key {key!r}"
    text = str(e).strip() or type(e).__name__
    lines = text.splitlines()
    return lines[0] + (" ..." if len(lines) > 1 else "")


def run_cli(main: Callable[[], None]) -> None:
    """Run a tool's ``main``: expected errors become ``error: <message>`` and exit 1; Ctrl-C exits 130."""
    try:
        main()
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except EXPECTED as e:
        if debug_enabled():
            raise
        print(f"error: {error_message(e)}", file=sys.stderr)
        print(f"(run with --debug or {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
