"""End to end in a real headless browser: start tools/demo.py, click a gallery image, see the mask and metrics."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from wsss.app.browser import CHROMIUM, REPO, demo_page


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (run .ci/browser-deps.sh)")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed (pip install -e '.[dev]')")
def test_click_gallery_image_shows_mask_and_metrics(tiny_run: tuple) -> None:
    _, work_dir, overrides = tiny_run
    with demo_page(str(REPO / "configs" / "quickstart.yaml"), str(work_dir), overrides, page_size=8,
                   viewport=(1400, 1000), start_timeout=150) as page:
        thumbs = page.locator("#gallery img")
        thumbs.first.wait_for(timeout=60_000)
        assert thumbs.count() == 8  # one page of the server-side list
        thumbs.nth(1).click()
        page.wait_for_function(
            "() => { const t = document.querySelector('#metrics textarea');"
            " return t && t.value.includes('IoU vs ground truth') }", timeout=120_000)
        metrics = page.locator("#metrics textarea").input_value()
        assert "confidence:" in metrics and "ROAD:" in metrics
        mask = page.locator("#final-mask img")
        mask.wait_for(timeout=10_000)
        assert mask.get_attribute("src")
        assert page.locator("#final-mask img").evaluate("img => img.naturalWidth") >= 256
        assert "[5/5]" in page.locator("#log textarea").input_value()
        assert page.locator("#stages img").count() >= 4  # CAM, boxes, GrabCut seed, final
        page.get_by_role("button", name="Accept and export (PNG + COCO RLE)").click()
        page.wait_for_function("() => (document.querySelector('#exports') || {innerHTML: ''}).innerHTML"
                               ".includes('coco_rle')", timeout=30_000)
    exports = list((Path(work_dir) / "demo_exports").glob("*_mask.png"))
    assert exports, "the accepted mask was not written"
