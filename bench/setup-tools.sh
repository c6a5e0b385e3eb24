#!/usr/bin/env bash
# Tools for the benchmarks (idempotent, run as root): matplotlib + py-spy in .venv (the
# [bench] extra), Debian nginx-light, and the LiteLLM proxy in its own venv under the cache
# dir so that its dependencies never mix with the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${MODELFLEET_CACHE:-$HOME/.cache/modelfleet}"
LITELLM_VERSION=1.106.2

.venv/bin/pip install -q -e '.[bench]'
if ! dpkg -s nginx-light >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
# (the benchmark runs its own nginx instance on an ephemeral loopback port)
if [ ! -x "$CACHE/litellm-venv/bin/litellm" ]; then
    mkdir -p "$CACHE"
    python3 -m venv "$CACHE/litellm-venv"
    "$CACHE/litellm-venv/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
fi
echo "bench tools: nginx $(nginx -v 2>&1 | cut -d/ -f2), litellm $LITELLM_VERSION in $CACHE/litellm-venv"
