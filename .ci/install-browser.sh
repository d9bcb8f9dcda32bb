#!/usr/bin/env bash
# Headless Chromium and its driver for tests/test_review_browser.py, from Debian's packages
# (browser downloads are not possible in CI). Idempotent and quiet: does nothing when both are
# already installed. Needs root or passwordless sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

bash "$(dirname "$0")/apt-install.sh" install-browser.sh chromium chromium-driver

command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || {
    echo "install-browser.sh: chromium or chromedriver still missing after apt-get install" >&2
    exit 1
}
