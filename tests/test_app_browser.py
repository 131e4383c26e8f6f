"""End to end in a real headless browser: start tools/demo.py, click a gallery image, see the mask and metrics."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"tools/demo.py exited with {proc.returncode}:\n{proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"tools/demo.py did not listen on 127.0.0.1:{port} within {timeout} s")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (run .ci/browser-deps.sh)")
def test_click_gallery_image_shows_mask_and_metrics(tiny_run: tuple) -> None:
    from playwright.sync_api import sync_playwright

    _, work_dir, overrides = tiny_run
    port = free_port()
    cmd = [sys.executable, str(REPO / "tools" / "demo.py"), str(REPO / "configs" / "quickstart.yaml"),
           "--work-dir", str(work_dir), "--port", str(port), "--page-size", "8", "--set", *overrides]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(proc, port, timeout=150)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
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
            browser.close()
        exports = list((Path(work_dir) / "demo_exports").glob("*_mask.png"))
        assert exports, "the accepted mask was not written"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
