"""Fixtures for the real llama.cpp tier: the cached llama-server build and the gemma3 GGUF.

``bash deploy/lab/llama_build.sh`` (part of ``deploy/setup.sh --all``) produces both. Without them
these tests skip with the reason, unless MODELFLEET_REQUIRE_REAL is set (CI sets it), in which
case a missing build fails loudly instead of hiding behind a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.deploy.lab import llama

REQUIRE_ENV = "MODELFLEET_REQUIRE_REAL"


def _missing(what: str) -> None:
    message = f"{what} not built: run `bash deploy/lab/llama_build.sh` (about 5 min on 2 cores)"
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{REQUIRE_ENV} is set but the {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """Path of the cached llama-server binary."""
    path = llama.llama_server_bin()
    if path is None:
        _missing(f"llama-server ({llama.cache_dir()}/llama-server-*/llama-server)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def gguf_model_path() -> Path:
    """Path of the assembled gemma3 270M Q4_K_M GGUF (a BASE model: no chat template)."""
    path = llama.gguf_model_path()
    if path is None:
        _missing(f"GGUF model ({llama.cache_dir()}/models/{llama.MODEL_FILE})")
    assert path is not None
    return path


@pytest.fixture
def start_llama_server(
    llama_server_bin: Path, gguf_model_path: Path, tmp_path: Path
) -> Iterator[Callable[..., llama.LlamaServer]]:
    """Factory: ``start_llama_server(alias="gemma")`` or ``(models_preset=path, models_max=1)``.

    Each server listens on 127.0.0.1:<free port>, is healthy when returned, and is stopped by
    PID (its whole process group) at teardown; logs go to tmp_path.
    """
    started: list[llama.LlamaServer] = []

    def start(**kwargs: Any) -> llama.LlamaServer:
        kwargs.setdefault("log_dir", tmp_path)
        server = llama.start_llama_server(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@contextlib.contextmanager
def router_process(config: dict[str, Any], workdir: Path) -> Iterator[str]:
    """``modelfleet-router`` as a process with ``config`` (its ``listen`` on 127.0.0.1): yields
    its URL once ``/readyz`` lists every configured backend; stopped at exit. Logs to
    ``workdir/router.log``."""
    path = workdir / "router.yaml"
    path.write_text(yaml.safe_dump(config))
    router_log = workdir / "router.log"
    with router_log.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelfleet.router", "--config", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        url = "http://" + config["listen"]
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, router_log.read_text()[-2000:]
                try:
                    with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
                        ready = json.loads(resp.read())["backends"]
                    if len(ready) == len(config["backends"]):
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "router did not become ready"
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
