"""The REAL llama.cpp backend for tests: cached paths and a way to start ``llama-server``.

Nothing here is a stand-in. ``deploy/lab/llama_build.sh`` builds llama-server from the
llama-cpp-python 0.3.36 sdist and assembles the gemma3 270M GGUF into the cache
(``$MODELFLEET_CACHE``, default ``~/.cache/modelfleet``); this module finds them and starts
servers on 127.0.0.1 with a free port, in single-model or router mode.

The model is a BASE model without a chat template, so every server gets
``--no-jinja --chat-template gemma``; send ``temperature: 0`` and a small ``max_tokens``, and
assert on structure, never on text. Example::

    with start_llama_server(alias="gemma") as server:
        urllib.request.urlopen(server.url + "/health")

Router mode (one parent, one child process per loaded model, LRU by ``--models-max``)::

    preset = write_models_preset(tmp_path / "models.ini", {"gemma-a": {}, "gemma-b": {}})
    with start_llama_server(models_preset=preset, models_max=1) as router: ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
# Base model without tokenizer.chat_template: --no-jinja must come before --chat-template.
CHAT_TEMPLATE_ARGS = ("--no-jinja", "--chat-template", "gemma")


def cache_dir() -> Path:
    return Path(os.environ.get("MODELFLEET_CACHE") or Path.home() / ".cache" / "modelfleet")


def llama_server_bin() -> Path | None:
    """The cached llama-server (newest build if several flag sets exist), or None.

    ``LLAMA_SERVER_BIN`` overrides the lookup."""
    if override := os.environ.get("LLAMA_SERVER_BIN"):
        return Path(override) if Path(override).is_file() else None
    builds = cache_dir().glob(f"llama-server-{LLAMA_CPP_PYTHON_VERSION}-*/llama-server")
    found = [p for p in builds if os.access(p, os.X_OK)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def gguf_model_path() -> Path | None:
    """The assembled gemma3 270M Q4_K_M GGUF, or None."""
    path = cache_dir() / "models" / MODEL_FILE
    return path if path.is_file() else None


def missing_artifacts() -> list[str]:
    """What ``deploy/lab/llama_build.sh`` has not produced yet (empty when ready)."""
    missing = []
    if llama_server_bin() is None:
        missing.append(f"llama-server binary under {cache_dir()}/llama-server-*")
    if gguf_model_path() is None:
        missing.append(f"GGUF model {cache_dir() / 'models' / MODEL_FILE}")
    return missing


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (llama-server cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_models_preset(path: Path, models: dict[str, dict[str, str]], **globals_: str) -> Path:
    """Write a ``--models-preset`` INI: one section per model id, all on the cached GGUF.

    Keys are llama-server long options without dashes; per-model values override
    ``globals_`` (the ``[*]`` section). Example::

        write_models_preset(p, {"gemma-a": {}, "gemma-b": {"ctx-size": "512"}}, threads="1")
    """
    model = gguf_model_path()
    if model is None:
        raise FileNotFoundError("GGUF model missing: run `bash deploy/lab/llama_build.sh`")
    shared = {"ctx-size": "1024", "parallel": "1", "threads": "1", **globals_}
    lines = ["version = 1", "", "[*]", *(f"{k} = {v}" for k, v in shared.items())]
    for name, options in models.items():
        lines += ["", f"[{name}]", f"model = {model}", "jinja = false", "chat-template = gemma"]
        lines += [f"{k} = {v}" for k, v in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class LlamaServer:
    """A running llama-server; ``stop()`` ends it (and, in router mode, its children)."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout`` (like llama-swap's unload)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # children a router left behind
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_llama_server(
    *,
    model: Path | None = None,
    alias: str | None = None,
    models_preset: Path | None = None,
    models_dir: Path | None = None,
    models_max: int | None = None,
    ctx_size: int = 1024,
    parallel: int = 1,
    threads: int = 1,
    extra_args: list[str] | None = None,
    port: int | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = 120.0,
) -> LlamaServer:
    """Start llama-server on 127.0.0.1 and wait until ``/health`` answers 200.

    Single-model mode by default (the cached GGUF; ``alias`` names it in ``/v1/models``).
    Router mode when ``models_preset`` or ``models_dir`` is given (no ``-m``).
    """
    binary = llama_server_bin()
    if binary is None:
        raise FileNotFoundError("llama-server missing: run `bash deploy/lab/llama_build.sh`")
    port = port or free_port()
    args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--metrics"]
    if models_preset or models_dir:
        if models_preset:
            args += ["--models-preset", str(models_preset)]
        if models_dir:
            args += ["--models-dir", str(models_dir)]
        if models_max is not None:
            args += ["--models-max", str(models_max)]
    else:
        path = model or gguf_model_path()
        if path is None:
            raise FileNotFoundError("GGUF model missing: run `bash deploy/lab/llama_build.sh`")
        args += ["-m", str(path), *CHAT_TEMPLATE_ARGS]
        args += ["-c", str(ctx_size), "-np", str(parallel), "-t", str(threads)]
        if alias:
            args += ["--alias", alias]
    args += extra_args or []
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="llama-server-"))
    log_path = log_dir / f"llama-server-{port}.log"
    with log_path.open("wb") as log:
        # Own process group: stop() reaches router-mode children too.
        process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LlamaServer(f"http://127.0.0.1:{port}", port, process, log_path, args)
    try:
        wait_healthy(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: LlamaServer, timeout: float) -> None:
    """Poll ``/health`` every 50 ms until 200 (it answers 503 while the model loads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"llama-server exited with {server.process.returncode} before it was ready:\n"
                f"{server.log_tail()}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(server.url + "/health", timeout=2) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(
        f"llama-server on port {server.port} not healthy after {timeout:.0f} s:\n"
        f"{server.log_tail()}"
    )
