"""The whole weakly-supervised loop on the embedded synthetic data set, in one command.

    {prog} [CONFIG] [--work-dir DIR] [--set KEY=VALUE ...]

make data -> train a classifier on image labels -> CAMs -> pseudo-labels (CAM-threshold baseline
and GrabCut-CAM) -> score them -> train DeepLabV3+ on the GrabCut-CAM labels -> score on val.
Every step resumes: a second run reuses what the first finished. CONFIG defaults to the shipped
`quickstart` config; the data set is generated under $WSSS_HOME/datasets/synthetic (default
~/.cache/wsss), the outputs go to ./work_dirs/quickstart unless --work-dir says otherwise.
"""
from __future__ import annotations

import argparse

from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, config_required=False)
    add_debug_arg(parser)


def run(args: argparse.Namespace) -> int:
    from wsss.quickstart import DEFAULT_CONFIG
    from wsss.quickstart import run as run_quickstart

    args.config = args.config or DEFAULT_CONFIG
    run_quickstart(args)
    return 0
