"""The interactive mask generator (paper 000) in the browser.

    {prog} [CONFIG] [--work-dir DIR] [--set KEY=VALUE ...] [--host 127.0.0.1 --port 7860]
    {prog} --photos DIR      # your photos: the shipped `photos` config on DIR (the bundled ImageNet model)

CONFIG defaults to the shipped `quickstart` config, whose classifier is trained by
`wsss train-classifier quickstart`. Binds 127.0.0.1 unless --host says otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from wsss.commands import usage_error
from wsss.runner import add_config_args
from wsss.utils.cli import add_debug_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser, config_required=False)
    add_debug_arg(parser)
    parser.add_argument("--photos", metavar="DIR", help="photo mode: the shipped photos config on the photos in DIR")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload", default="10mb", help="largest accepted upload (gradio size string)")
    parser.add_argument("--max-side", type=int, default=1024, help="uploaded images are shrunk to this longer side")
    parser.add_argument("--page-size", type=int, default=12, help="gallery images per page")


def run(args: argparse.Namespace) -> int | None:
    if args.photos:
        if args.config:
            return usage_error("--photos uses the shipped photos config; give either CONFIG or --photos")
        args.config = "photos"
        args.overrides = [f"data.folder.root={Path(args.photos).resolve()}"] + list(args.overrides)
    args.config = args.config or "quickstart"
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home; before gradio is imported
    from wsss.app.engine import DemoEngine
    from wsss.app.ui import build_app
    from wsss.runner import setup

    cfg, work_dir = setup(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: anyone who reaches this address can use the demo", file=sys.stderr)
    try:
        engine = DemoEngine(cfg, work_dir, max_side=args.max_side)
    except FileNotFoundError as e:
        raise SystemExit(f"demo: {e}") from None
    app = build_app(engine, page_size=args.page_size, export_dir=work_dir / "demo_exports")
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        max_file_size=args.max_upload,
        show_error=True,
        footer_links=[],
    )
    return None
