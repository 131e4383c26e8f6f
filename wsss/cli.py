"""The ``wsss`` command: ``wsss quickstart [CONFIG] [--work-dir DIR] [--set ...]``."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"quickstart": "wsss.quickstart"}
    if not argv or argv[0] not in commands:
        raise SystemExit("usage: wsss quickstart [CONFIG] [--work-dir DIR] [--set KEY=VALUE ...]\n"
                         "other steps are tools/*.py (gen_pseudo, train, eval, train_classifier)")
    import importlib

    importlib.import_module(commands[argv[0]]).main(argv[1:])
