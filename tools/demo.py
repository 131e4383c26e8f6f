"""The interactive mask generator (paper 000) in the browser.

    python tools/demo.py [CONFIG] [--work-dir DIR] [--set KEY=VALUE ...] [--host 127.0.0.1 --port 7860]
    python tools/demo.py --photos DIR      # your photos: configs/photos.yaml on DIR (the bundled ImageNet model)

CONFIG defaults to configs/quickstart.yaml, whose classifier is trained by
`python tools/train_classifier.py configs/quickstart.yaml`. Binds 127.0.0.1 unless --host says otherwise.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.app.engine import DemoEngine  # noqa: E402
from wsss.app.ui import build_app  # noqa: E402
from wsss.runner import REPO_ROOT, add_config_args, setup  # noqa: E402
from wsss.utils.cli import add_debug_arg, run_cli  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, config_required=False)
    add_debug_arg(parser)
    parser.add_argument("--photos", metavar="DIR", help="photo mode: configs/photos.yaml on the photos in DIR")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload", default="10mb", help="largest accepted upload (gradio size string)")
    parser.add_argument("--max-side", type=int, default=1024, help="uploaded images are shrunk to this longer side")
    parser.add_argument("--page-size", type=int, default=12, help="gallery images per page")
    args = parser.parse_args(argv)
    if args.photos:
        if args.config:
            parser.error("--photos uses configs/photos.yaml; give either CONFIG or --photos")
        args.config = str(REPO_ROOT / "configs" / "photos.yaml")
        args.overrides = [f"data.folder.root={Path(args.photos).resolve()}"] + list(args.overrides)
    args.config = args.config or str(REPO_ROOT / "configs" / "quickstart.yaml")
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


if __name__ == "__main__":
    run_cli(main)
