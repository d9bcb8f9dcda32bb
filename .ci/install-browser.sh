#!/usr/bin/env bash
# Headless Chromium and its driver for tests/test_review_browser.py, from Debian's packages
# (browser downloads are not possible in CI). Idempotent and quiet: does nothing when both are
# already installed. Needs root or passwordless sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-browser.sh: need root (or sudo) to apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null

command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || {
    echo "install-browser.sh: chromium or chromedriver still missing after apt-get install" >&2
    exit 1
}
