#!/usr/bin/env bash
# apt-get install PACKAGE... quietly, as root or through passwordless sudo; shared by the CI
# install scripts. Usage: apt-install.sh WHO PACKAGE... (WHO names the caller in errors).
set -euo pipefail
who=$1
shift

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "$who: need root (or sudo) to apt-get install $*" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
