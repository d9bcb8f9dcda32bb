#!/usr/bin/env bash
# A Java 17+ runtime for the Spark engine's tests (tests/test_spark.py; pyspark 4 needs Java 17),
# from Debian's openjdk-17-jre-headless. Idempotent and quiet: does nothing when `java -version`
# already reports 17 or newer. Needs root or passwordless sudo only when it has to install.
set -euo pipefail

java_major() {
    # `java -version` prints to stderr: openjdk version "17.0.15" 2025-04-15 (or "1.8.0_392")
    local version
    version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
    version=${version#1.}
    echo "${version%%[.+-]*}"
}

if command -v java >/dev/null 2>&1; then
    major=$(java_major)
    if [ -n "$major" ] && [ "$major" -ge 17 ] 2>/dev/null; then
        exit 0
    fi
fi

bash "$(dirname "$0")/apt-install.sh" install-java.sh openjdk-17-jre-headless

# An older default java may still come first on PATH: point it at 17.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
java17=$(ls /usr/lib/jvm/java-17-openjdk-*/bin/java 2>/dev/null | head -n 1 || true)
if [ -n "$java17" ] && [ "$(java_major 2>/dev/null || echo 0)" != "17" ]; then
    $SUDO update-alternatives --set java "$java17" >/dev/null 2>&1 || true
fi

major=$(java_major 2>/dev/null || echo 0)
if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    echo "install-java.sh: java -version still reports ${major:-nothing} after installing openjdk-17-jre-headless" >&2
    exit 1
fi
