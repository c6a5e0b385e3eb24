#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (run as root).
#   bash deploy/setup.sh            Python environment only (.venv with modelfleet[test])
#   bash deploy/setup.sh --all      also podman + host image, llama-server build + model, chromium, bench tools
#   bash deploy/setup.sh --molecule also a separate .venv-molecule with the Molecule stack (role scenarios)
# Environment: MODELFLEET_CACHE (default ~/.cache/modelfleet) holds the cached image tarball and builds.
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
    # Check pip, not python: an interrupted `python3 -m venv` (or one run before python3-venv was
    # installed) leaves .venv/bin/python without pip; venv run again on the folder completes it.
    [ -x .venv/bin/pip ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
}

require_root() {
    [ "$(id -u)" = 0 ] || { echo "setup: ERROR: $1 needs root (it installs apt packages): sudo bash $0 $1" >&2; exit 1; }
}

setup_fleet() {
    # The local container fleet: podman (runc, netavark), debootstrap for the host image,
    # openssh-client for the fleet's ssh key, dpkg-dev + gnupg for the stand-in apt repository,
    # curl for the demo's printed commands (and their test), zstd to pack the Ollama stand-in's
    # release as Ollama packs its own (.tar.zst).
    apt_install podman runc netavark aardvark-dns uidmap debootstrap openssh-client dpkg-dev gnupg iptables curl zstd
    bash deploy/lab/hostimage.sh
}

setup_molecule() {
    # Separate venv: molecule + ansible-core must not leak into the project's .venv.
    bash deploy/lab/molecule-venv.sh
}

ALL=0 MOLECULE=0
for arg in "$@"; do
    case "$arg" in
        --all) require_root "$arg"; ALL=1 ;;
        --molecule) MOLECULE=1 ;;
        *) echo "setup: ERROR: unknown option '$arg' (known: --all, --molecule)" >&2; exit 2 ;;
    esac
done

setup_python
if [ "$ALL" = 1 ]; then
    setup_fleet
    bash deploy/lab/llama_build.sh  # real llama-server + gemma3 270M GGUF, cached in $MODELFLEET_CACHE
    bash bench/setup-tools.sh  # nginx-light, LiteLLM venv, matplotlib/py-spy for bench/
    apt_install chromium  # headless browser for the router dashboard test (-m browser)
    apt_install redis-server  # real Redis for the router replica tests (tests/router/test_shared_state.py)
fi
if [ "$MOLECULE" = 1 ]; then setup_molecule; fi
echo "setup: done"
