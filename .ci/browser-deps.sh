#!/usr/bin/env bash
# Debian's chromium + driver for the demo's browser test (tests/test_app_browser.py).
# Playwright drives /usr/bin/chromium; `playwright install` (a browser download) is not used.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
