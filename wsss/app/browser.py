"""Driving the demo in Debian's headless chromium: used by the browser test and the screenshot tool."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"  # from .ci/browser-deps.sh; playwright's own browser download is not used
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


@contextlib.contextmanager
def demo_page(config: str, work_dir: str, overrides: list[str], page_size: int,
              viewport: tuple[int, int], start_timeout: float = 180) -> Iterator[Any]:
    """Start ``tools/demo.py`` on a free local port and yield a chromium page opened on it."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    cmd = [sys.executable, str(REPO / "tools" / "demo.py"), config, "--work-dir", work_dir, "--port", str(port),
           "--page-size", str(page_size)] + (["--set", *overrides] if overrides else [])
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(proc, port, timeout=start_timeout)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            try:
                yield page
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
