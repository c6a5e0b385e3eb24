"""Stand-in release archives: shaped like the real downloads, reproducible, served over HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelfleet.deploy.lab.llama import free_port
from modelfleet.deploy.lab.standins.release import Release, build_releases, serve_releases


@pytest.fixture
def releases(tmp_path: Path) -> dict[str, Release]:
    if shutil.which("zstd") is None:
        pytest.skip(
            "zstd is not installed (Ollama releases are .tar.zst): bash deploy/setup.sh --all"
        )
    return build_releases(tmp_path / "dist", ollama_version="0.14.2", llama_swap_version="v180")


def test_archives_have_the_real_layout(releases: dict[str, Release]) -> None:
    ollama, swap = releases["ollama"], releases["llama-swap"]
    assert ollama.filename == "ollama-linux-amd64.tar.zst"
    assert swap.filename == "llama-swap_180_linux_amd64.tar.gz"
    unpacked = subprocess.run(
        ["zstd", "-d", "-c", str(ollama.path)], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(unpacked.stdout)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        launcher = tar.extractfile("bin/ollama")
        assert launcher is not None
        head = launcher.read().decode()
    assert set(members) == {"bin", "bin/ollama", "lib", "lib/ollama", "lib/ollama/STANDIN.txt"}
    assert members["bin/ollama"].mode == 0o755
    assert members["lib/ollama"].isdir()
    assert head.startswith("#!/usr/bin/env python3\n")
    assert 'VERSION = "0.14.2"' in head
    with tarfile.open(swap.path) as tar:
        assert tar.getnames() == ["llama-swap"]


def test_archives_are_reproducible_and_listed(releases: dict[str, Release], tmp_path: Path) -> None:
    again = build_releases(tmp_path / "again", ollama_version="0.14.2", llama_swap_version="v180")
    assert {n: r.sha256 for n, r in again.items()} == {n: r.sha256 for n, r in releases.items()}
    for release in releases.values():
        assert hashlib.sha256(release.path.read_bytes()).hexdigest() == release.sha256
    sums = (releases["ollama"].path.parent / "sha256sum.txt").read_text().splitlines()
    assert sums == [f"{r.sha256}  {r.filename}" for r in releases.values()]


def download(url: str, dest: Path) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        dest.write_bytes(resp.read())
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20  # a guard against hangs, not a timing assertion
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the released binary exited early"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_served_ollama_release_installs_and_runs_like_the_real_one(
    releases: dict[str, Release], tmp_path: Path
) -> None:
    ollama = releases["ollama"]
    with serve_releases(ollama.path.parent) as server:
        archive = tmp_path / ollama.filename
        assert download(server.url_for(ollama), archive) == ollama.sha256
    prefix = tmp_path / "usr"
    prefix.mkdir()
    # as the real release's install does: tar -C /usr -xf ollama-linux-amd64.tar.zst (GNU tar
    # calls zstd)
    subprocess.run(["tar", "-C", str(prefix), "-xf", str(archive)], check=True)
    binary = prefix / "bin" / "ollama"
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(tmp_path / "models"),
        "STANDIN_PULL_MB_PER_S": "0",
    }
    proc = subprocess.Popen([binary, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", proc)
        version = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True)
        assert version.stdout.strip() == "ollama version is 0.14.2"
        pulled = subprocess.run([binary, "pull", "qwen2.5:0.5b"], env=env, capture_output=True)
        assert pulled.returncode == 0
        listed = subprocess.run([binary, "list"], env=env, capture_output=True, text=True)
        assert "qwen2.5:0.5b" in listed.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "models" / "manifests").is_dir()


def test_served_llama_swap_release_runs_like_the_real_one(
    releases: dict[str, Release], tmp_path: Path
) -> None:
    swap = releases["llama-swap"]
    with serve_releases(swap.path.parent) as server:
        archive = tmp_path / swap.filename
        assert download(server.url_for(swap), archive) == swap.sha256
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "release", filter="data")
    binary = tmp_path / "release" / "llama-swap"
    version = subprocess.run([binary, "-version"], capture_output=True, text=True)
    assert version.stdout.startswith("version: 180 ")
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  m:\n    cmd: llama-server --port ${PORT} -m /x.gguf\n")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-config", config, "-listen", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
            assert b'"id": "m"' in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_file_is_404(tmp_path: Path) -> None:
    with serve_releases(tmp_path) as server, pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(server.url_for("nope.tgz"), timeout=10)
    assert exc.value.code == 404


@pytest.mark.parametrize("module", ["ollama.py", "llama_swap.py", "release.py"])
def test_standins_need_only_the_standard_library(module: str) -> None:
    """Container hosts have a bare python3: -I -S hides site-packages (pydantic, yaml ...)."""
    path = Path(__file__).parents[2] / "deploy" / "lab" / "standins" / module
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(path), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
