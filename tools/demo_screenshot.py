"""Screenshot of the demo after one generation, for docs/demo.png.

    python tools/demo_screenshot.py [--out docs/demo.png] [--work-dir DIR] [--set KEY=VALUE ...]

Without --work-dir a small classifier is trained first in a temp folder (96 px synthetic set, ~1 min on CPU).
Needs /usr/bin/chromium (.ci/browser-deps.sh) and the playwright package.
"""
import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "docs" / "demo.png"))
    parser.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"))
    parser.add_argument("--work-dir", help="work dir that already holds classifier/classifier.pth")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[])
    parser.add_argument("--index", type=int, default=2, help="gallery image to click")
    args = parser.parse_args()
    from wsss.app.browser import demo_page  # after parsing: --help stays instant

    overrides = list(args.overrides)
    work_dir = args.work_dir
    if work_dir is None:
        from wsss.classifier import train_classifier
        from wsss.config import load_config

        root = Path(tempfile.mkdtemp(prefix="wsss-shot-"))
        overrides = [f"data.synthetic.root={root / 'data'}", "data.synthetic.num_train=48", "data.synthetic.num_val=12",
                     "data.synthetic.size=96", "classifier.timm.epochs=3", "classifier.timm.input_size=96",
                     "classifier.timm.batch_size=16", "device=cpu"] + overrides
        work_dir = str(root / "work")
        train_classifier(load_config(args.config, overrides), work_dir)
    with demo_page(args.config, work_dir, overrides, page_size=12, viewport=(1500, 1100)) as page:
        page.locator("#gallery img").first.wait_for(timeout=60_000)
        page.locator("#gallery img").nth(args.index).click()
        page.wait_for_function("() => { const t = document.querySelector('#metrics textarea');"
                               " return t && t.value.includes('time:') }", timeout=180_000)
        page.wait_for_timeout(1500)  # let the stage images load
        page.screenshot(path=args.out, full_page=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
