"""A router release handoff over one listening socket (systemd socket activation) cuts nothing.

``modelfleet-router`` takes its listening socket from systemd when ``LISTEN_FDS``/``LISTEN_PID``
say so (``router/__main__.py``); on SIGTERM it stops accepting and lets its requests in flight
finish. Here the test plays systemd: it owns the socket, starts router A on it, and while a
stream runs through A it stops A and starts router B on the same socket, with clients sending
requests all along. The stream finishes in full and every client request is answered: nothing
is refused, reset or cut. Loopback only (the Ollama stand-in as the backend).
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelfleet.deploy.lab.standins import ollama as ollama_standin

ROUTER = str(Path(sys.executable).with_name("modelfleet-router"))
MODEL = "qwen2.5:0.5b"


@pytest.fixture
def backend() -> Iterator[str]:
    # 4 tokens/s: the stand-in's 10-chunk answer streams for about 2.5 s.
    server = ollama_standin.start_in_thread(
        vram_mb=8192, models=[MODEL], tokens_per_s=4.0, num_parallel=8
    )
    yield server.url
    server.stop()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on a free loopback port: the one "systemd" owns and passes to each
    router process, or an address already in use."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


def write_config(tmp_path: Path, backend: str) -> Path:
    config = tmp_path / "router.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:1",  # not used: the socket comes from "systemd"
                "health": {"interval_s": 0.2},
                "backends": [
                    {"name": "b1", "url": backend, "kind": "ollama", "models": [{"name": MODEL}]}
                ],
            }
        )
    )
    return config


def start_router(config: Path, listener: socket.socket, *options: str) -> subprocess.Popen[bytes]:
    """The router with ``listener`` as its fd 3, as systemd passes it (bash: dash's ``exec``
    takes single-digit descriptors only)."""
    fd = listener.fileno()
    return subprocess.Popen(
        ["bash", "-c", f'exec 3<&{fd}; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --config "$@"',
         ROUTER, str(config), *options],
        pass_fds=(fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def chat(base: str, tokens: int) -> tuple[int, bool, int]:
    """(HTTP status, whether the stream finished with [DONE], content chunks)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": tokens,
        "stream": True,
    }
    request = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    done, chunks = False, 0
    with urllib.request.urlopen(request, timeout=60) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunks += 1
        return resp.status, done, chunks


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the router at {base} did not become ready")


def test_a_new_process_takes_the_socket_over_without_cutting_anything(
    backend: str, listener: socket.socket, tmp_path: Path
) -> None:
    config = write_config(tmp_path, backend)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    old = start_router(config, listener)
    new = None
    try:
        try:
            wait_ready(base)
        except AssertionError:
            old.kill()
            raise AssertionError(old.stderr.read() if old.stderr else "") from None
        results: list[tuple[int, bool, int] | str] = []

        def client(tokens: int, count: int) -> None:
            for _ in range(count):
                try:
                    results.append(chat(base, tokens))
                except OSError as exc:
                    results.append(f"{type(exc).__name__}: {exc}")

        long_reply: list[tuple[int, bool, int]] = []
        long_ended: list[float] = []

        def stream_through_the_handoff() -> None:
            long_reply.append(chat(base, 64))
            long_ended.append(time.monotonic())

        long_thread = threading.Thread(target=stream_through_the_handoff)
        long_thread.start()
        time.sleep(0.5)  # the stream is running through the old process
        clients = [threading.Thread(target=client, args=(2, 6)) for _ in range(3)]
        for thread in clients:
            thread.start()
        old.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        new = start_router(config, listener)
        for thread in [long_thread, *clients]:
            thread.join(timeout=120)
        assert old.wait(timeout=30) == 0, old.stderr.read() if old.stderr else ""
        assert new.poll() is None, "the new process is serving"
    finally:
        for proc in (old, new):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    problems = [r for r in results if not (isinstance(r, tuple) and r[0] == 200 and r[1])]
    assert problems == [] and len(results) == 18, results
    # The stream that ran while the old process was told to stop finished in full after it.
    ((status, done, chunks),), (ended,) = long_reply, long_ended
    assert (status, done) == (200, True) and chunks >= 5, long_reply
    assert ended > stopped_at + 0.5, "the stream was in flight when the old process stopped"


def test_a_connection_accepted_before_the_stop_is_still_served(
    backend: str, listener: socket.socket, tmp_path: Path
) -> None:
    """A connection the stopping process had already accepted, with no request on it yet (the
    client connected just before SIGTERM, or keeps an idle keep-alive connection), gets its
    next request served during ``--accept-grace``, with ``Connection: close``; one that stays
    silent is closed after the grace, and the process exits cleanly."""
    port = listener.getsockname()[1]
    router = start_router(write_config(tmp_path, backend), listener, "--accept-grace", "10")
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        talking, silent = (http.client.HTTPConnection("127.0.0.1", port) for _ in range(2))
        for conn in (talking, silent):  # accepted by this process, then idle (keep-alive)
            conn.request("GET", "/readyz")
            assert conn.getresponse().read() and conn.sock is not None
        router.send_signal(signal.SIGTERM)
        assert router.stderr is not None
        log = b""
        while b"stopping:" not in log and (line := router.stderr.readline()):
            log += line
        assert b"stopping:" in log, log.decode()

        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        talking.request("POST", "/v1/chat/completions", json.dumps(body))
        reply = talking.getresponse()
        assert reply.status == 200 and json.loads(reply.read())["choices"]
        assert reply.getheader("Connection") == "close"

        assert router.wait(timeout=60) == 0, router.stderr.read().decode()
        assert silent.sock is not None and silent.sock.recv(1) == b""  # closed, not reset
    finally:
        if router.poll() is None:
            router.kill()
            router.wait()


def test_a_listen_address_in_use_is_named(
    backend: str, listener: socket.socket, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"  # taken by the fixture's socket
    run = subprocess.run(
        [ROUTER, "--config", str(write_config(tmp_path, backend)), "--listen", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"modelfleet-router: cannot listen on {address}:" in run.stderr
    assert "Address already in use" in run.stderr
