#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (run as root).
#   bash deploy/setup.sh            Python environment only (.venv with modelfleet[test])
#   bash deploy/setup.sh --all      also podman + host image, llama-server build + model, chromium, bench tools
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup: apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

setup_python() {
    command -v python3 >/dev/null || apt_install python3
    python3 -c 'import sys; assert sys.version_info >= (3, 11), "modelfleet needs Python >= 3.11"'
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
}

setup_python
if [ "${1:-}" = "--all" ]; then
    :  # the fleet, llama-server and browser steps are added by their issues
fi
echo "setup: done"
