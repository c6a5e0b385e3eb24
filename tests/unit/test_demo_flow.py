"""``modelfleet demo up``'s control flow: a failure after the hosts exist leaves no half fleet.

The steps that need root, podman and the builds are replaced by recorders here; the real
thing runs end to end in tests/fleet/test_demo.py.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab import demo, localfleet, localstack


@contextlib.contextmanager
def serve_nothing(files_dir: Path, port: int = 0, host: str = "") -> Iterator[str]:
    yield "http://files.invalid"


class Recorder:
    def __init__(self, existing: bool) -> None:
        self.existing = existing
        self.calls: list[str] = []


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    def install(existing: bool, fail_at: str) -> Recorder:
        rec = Recorder(existing)

        def step(name: str, result: Any = None) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                rec.calls.append(name)
                if name == fail_at:
                    raise demo.DemoError(f"{name} failed")
                return result

            return run

        monkeypatch.setattr(demo, "check_ready", lambda *args: [])
        monkeypatch.setattr(localfleet, "network_gateway", lambda network: "10.89.0.1")
        monkeypatch.setattr(demo, "state_dir", lambda fleet: tmp_path / fleet)
        monkeypatch.setattr(demo, "run_script", step("script"))
        monkeypatch.setattr(localfleet, "status", lambda fleet: ["a host"] if rec.existing else [])
        monkeypatch.setattr(localfleet, "up", step("hosts", []))
        monkeypatch.setattr(localfleet, "down", step("down", []))
        stack = localstack.StackFiles("o.tgz", "0" * 64, "s.tgz", "1" * 64, Path("/bin/true"))
        monkeypatch.setattr(localstack, "build_stack_files", step("files", stack))
        monkeypatch.setattr(localstack, "serve_files", serve_nothing)
        monkeypatch.setattr(demo, "run_pyinfra", step("deploy"))
        return rec

    return install


@pytest.mark.parametrize("fail_at", ["files", "deploy"])
def test_failure_on_a_new_fleet_removes_it(patched: Any, fail_at: str, tmp_path: Path) -> None:
    rec = patched(existing=False, fail_at=fail_at)
    with pytest.raises(demo.DemoError, match=f"{fail_at} failed"):
        demo.up("f1", demo.Progress(6, out=io.StringIO()), files_port=0)
    assert rec.calls[-1] == "down"
    assert not (tmp_path / "f1").exists()


def test_failure_on_an_existing_fleet_keeps_it(patched: Any) -> None:
    rec = patched(existing=True, fail_at="deploy")
    with pytest.raises(demo.DemoError):
        demo.up("f2", demo.Progress(6, out=io.StringIO()), files_port=0)
    assert "down" not in rec.calls


def test_problems_stop_before_any_step(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = demo.preflight.Problem("podman is not installed", "apt-get install podman")
    monkeypatch.setattr(demo, "check_ready", lambda *args: [problem])
    monkeypatch.setattr(demo, "run_script", lambda *a: pytest.fail("a step ran"))
    with pytest.raises(demo.DemoError, match="podman is not installed") as err:
        demo.up("f3", demo.Progress(6, out=io.StringIO()))
    assert "apt-get install podman" in str(err.value)


def test_bare_machine_preflight_checks_the_loopback_router_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No podman network yet (a machine that never ran a container): the file server's port
    cannot be taken on an address that does not exist, so only the router's loopback port is
    checked, by binding it."""
    monkeypatch.setattr(demo.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(demo.preflight.os, "geteuid", lambda: 0)
    monkeypatch.setattr(localfleet, "status", lambda fleet: [])
    monkeypatch.setattr(localfleet, "network_gateway", lambda network: None)
    assert demo.check_ready("bare", 8765, 0) == []  # port 0: any free port binds
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        problems = demo.check_ready("bare", 8765, port)
    assert [str(p) for p in problems] == [
        f"port 127.0.0.1:{port} is already in use (needed for the router, published on this "
        f"machine's loopback)\n    fix: stop whatever listens there (`ss -ltnp 'sport = "
        f":{port}'` shows it), or choose another port with --router-port"
    ]


def test_the_local_inventory_names_the_fleets_that_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``demo up`` the hosts run as fleet 'demo'; the inventory's default is another."""
    import runpy

    demo_hosts = [
        localfleet.RunningHost(
            name=spec.name, container=f"demo-{spec.name}", address="", fleet="demo"
        )
        for spec in localfleet.LOCAL_HOSTS
    ]

    def status(fleet: str | None = localfleet.DEFAULT_FLEET) -> list[localfleet.RunningHost]:
        return [host for host in demo_hosts if fleet in (None, host.fleet)]

    monkeypatch.setattr(localfleet, "status", status)
    monkeypatch.delenv("MODELFLEET_FLEET", raising=False)
    with pytest.raises(RuntimeError, match="fleet 'demo' runs: MODELFLEET_FLEET=demo"):
        runpy.run_path("inventory/local.py")


@contextlib.contextmanager
def fake_router(answers: dict[str, tuple[int, Any]]) -> Iterator[str]:
    """A router on loopback answering each path with (status, JSON)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.get(self.path, (404, {"error": "not found"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


READY = {"ready": True, "backends": ["a-cpu", "b-gpu"], "shared_state": "off"}
LOADED = {"models": [{"name": "gemma3-270m", "backend": "a-cpu", "status": "loaded"}]}


@pytest.mark.parametrize(
    ("answers", "summary"),
    [
        (
            {"/readyz": (200, READY), "/api/ps": (200, LOADED)},
            "ready: 2 backends in rotation; loaded: gemma3-270m on a-cpu",
        ),
        (
            {"/readyz": (200, READY), "/api/ps": (200, {"models": []})},
            "ready: 2 backends in rotation; loaded: nothing",
        ),
        (  # /readyz answers 503 with its JSON when no backend is in rotation
            {"/readyz": (503, {"ready": False, "backends": []}), "/api/ps": (200, LOADED)},
            "not ready: no backend in rotation (all unhealthy or drained)",
        ),
    ],
    ids=["ready", "nothing-loaded", "not-ready"],
)
def test_demo_status_says_what_the_router_says(answers: dict, summary: str) -> None:
    with fake_router(answers) as url:
        assert demo.router_summary(url) == summary


def test_demo_status_of_a_router_that_does_not_answer() -> None:
    with fake_router({}) as url:
        pass  # stopped: its port refuses
    assert demo.router_summary(url).startswith("not answering (")


def test_demo_status_without_the_router_host_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    host = localfleet.RunningHost("gpu-nv1", "demo-gpu-nv1", "10.89.0.11", "demo")
    monkeypatch.setattr(localfleet, "status", lambda fleet: [host])
    monkeypatch.setattr(demo, "published_router_port", lambda fleet: None)
    result = CliRunner().invoke(demo.demo_command, ["status"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "is not running (or publishes no port" in result.output
