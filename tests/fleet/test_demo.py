"""``modelfleet demo`` end to end (marker ``fleet``): the newcomer's first command.

1. ``demo up`` on a fresh fleet, whose podman network and bridge interface do not exist yet
   (as on a machine that never ran a container), ends with a real llama.cpp answer through
   the router and prints the next steps;
2. the printed curl commands work as printed (OpenAI and Ollama APIs), against the router
   published on this machine's loopback (127.0.0.1);
3. the dashboard, in headless Debian chromium, shows the hosts and the model the demo loaded;
   its screenshot is saved (``MODELFLEET_SCREENSHOT=path`` keeps a copy, for the README);
4. a second ``up`` changes nothing;
5. a busy port stops ``up`` before it touches anything, with the fix in the message;
6. ``down`` leaves no container, no network, no state directory and no file server behind;
7. the router's access log records the requests, and ``modelfleet simulate`` replays them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.deploy.lab import demo, localfleet, localstack, preflight
from modelfleet.deploy.lab.llama import free_port
from tests.browser import run_chromium
from tests.fleet.conftest import REPO, new_fleet_name

MODELFLEET = str(Path(sys.executable).with_name("modelfleet"))


def modelfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELFLEET, *args], cwd=REPO, capture_output=True, text=True, timeout=1500, check=False
    )


class DemoRun:
    def __init__(self, fleet: str, files_port: int, router_port: int) -> None:
        self.fleet, self.files_port, self.router_port = fleet, files_port, router_port

    def up(self) -> str:
        proc = modelfleet(
            "demo", "up", "--fleet", self.fleet,
            "--files-port", str(self.files_port), "--router-port", str(self.router_port),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        return proc.stdout

    def changed_operations(self) -> list[str]:
        """``host: operation`` for each operation the last deploy changed (from its log)."""
        changed, operation = [], ""
        for line in (REPO / ".fleet" / self.fleet / "deploy.log").read_text().splitlines():
            if line.startswith("--> Starting"):
                operation = line.split(":", 1)[-1].strip()
            elif line.strip().endswith("] Success"):
                changed.append(f"{line.strip().split(']')[0].lstrip('[')}: {operation}")
        return changed

    def down(self) -> str:
        proc = modelfleet("demo", "down", "--fleet", self.fleet)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout


@pytest.fixture(scope="module")
def demo_run(fleet_available: None) -> Iterator[DemoRun]:
    run = DemoRun(new_fleet_name(), free_port(), free_port())
    try:
        yield run
    finally:
        localfleet.down(run.fleet)
        shutil.rmtree(demo.state_dir(run.fleet), ignore_errors=True)


def printed_commands(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("curl ")]


def interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def network_exists(name: str) -> bool:
    return subprocess.run(["podman", "network", "exists", name], check=False).returncode == 0


def test_demo_up_rerun_and_down(demo_run: DemoRun, tmp_path: Path) -> None:
    # Like a machine that never ran a container: the fleet's network and its bridge interface
    # do not exist yet, so nothing may be probed on the bridge's address before `up`.
    network = demo.network_name(demo_run.fleet)
    assert not network_exists(network)
    before = interfaces()
    first = demo_run.up()
    gateway = localfleet.network_gateway(network)
    assert gateway and network_exists(network)
    assert interfaces() - before, "the fleet's bridge interface appeared with its hosts"
    # The demo's own first request was answered by real llama.cpp on the llama-server host.
    served = re.search(r"answered in [\d.]+ s by backend (\S+) on host (\S+)\n\s+why: (\S+)", first)
    assert served, first
    assert served.group(2) == demo.ROUTER_HOST and served.group(3) in {"load-fits", "resident"}

    # The printed commands work as printed.
    commands = printed_commands(first)
    assert len(commands) == 3, first
    assert all(f"http://127.0.0.1:{demo_run.router_port}/" in c for c in commands), commands
    openai = json.loads(subprocess.check_output(commands[0], shell=True, text=True))
    assert openai["choices"][0]["message"]["role"] == "assistant"
    assert openai["model"] == demo.DEMO_MODEL
    ollama_lines = subprocess.check_output(commands[1], shell=True, text=True).splitlines()
    chunks = [json.loads(line) for line in ollama_lines if line.strip()]
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] > 0
    assert chunks[-1]["total_duration"] > 0  # nanoseconds, as Ollama reports them
    ps = json.loads(subprocess.check_output(commands[2], shell=True, text=True))
    served_model = {entry["name"]: entry for entry in ps["models"]}[demo.DEMO_MODEL]
    # what the real llama-server (router mode) reports of the GGUF, as Ollama names it
    assert served_model["details"]["parameter_size"] == "268.10M"
    assert served_model["details"]["quantization_level"] == "Q4_K_M"
    # The catalog's alias of the demo model is that model: served where it is resident, not
    # loaded a second time over it (llama-server keeps one model in this demo).
    alias = json.dumps(
        {
            "model": localstack.GEMMA_ALIAS,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
        }
    )
    curl = commands[0].split(" -d ")[0] + " -D - -o /dev/null -d '" + alias + "'"
    headers = subprocess.check_output(curl, shell=True, text=True).lower()
    assert "x-modelfleet-reason: resident" in headers, headers

    # Every client API reaches every backend kind of the demo: real llama-server, the
    # llama-swap stand-in and the Ollama stand-in (as Ollama >= 0.14 does), whole and streamed.
    base = f"http://127.0.0.1:{demo_run.router_port}"
    say_hi = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    apis = {
        "/v1/responses": {"input": "Hi", "max_output_tokens": 3},
        "/v1/messages": say_hi,
        "/v1/chat/completions": say_hi,
    }
    for model in (demo.DEMO_MODEL, "gemma3-270m-swap", "qwen2.5-0.5b"):
        for path, body in apis.items():
            for stream in (False, True):
                sent = json.dumps({"model": model, "stream": stream, **body})
                answer = subprocess.run(
                    ["curl", "-s", "-N", "-m", "120", "-w", "\n%{http_code}", base + path,
                     "-H", "Content-Type: application/json", "-d", sent],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                text, status = answer.rsplit("\n", 1)
                assert status == "200", (model, path, stream, text)
                # the name the client asked for, never the backend's own (qwen2.5:0.5b)
                named = set(re.findall(r'"model": ?"([^"]*)"', text))
                assert named == {model}, (model, path, stream, named)

    # Every routed request is in the router's access log (inventory/local.py turns it on; the
    # unit's LogsDirectory lets the router's user write it), and `modelfleet simulate` replays
    # that traffic on the fleet's own router.yaml, as docs/simulate.md shows.
    router_container = f"{demo_run.fleet}-{demo.ROUTER_HOST}"
    copies = {}
    for path in ("/var/log/modelfleet/access.jsonl", "/etc/modelfleet/router.yaml"):
        copies[path] = tmp_path / Path(path).name
        copies[path].write_text(
            subprocess.check_output(["podman", "exec", router_container, "cat", path], text=True)
        )
    logged = [json.loads(line) for line in copies["/var/log/modelfleet/access.jsonl"].open()]
    assert {demo.DEMO_MODEL, "gemma3-270m-swap", "qwen2.5-0.5b"} <= {e["model"] for e in logged}
    replay = modelfleet(
        "simulate", "--router-config", str(copies["/etc/modelfleet/router.yaml"]),
        "--access-log", str(copies["/var/log/modelfleet/access.jsonl"]),
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"trace: {len(logged)} requests" in replay.stdout, replay.stdout

    # The dashboard shows the hosts and the model the demo request loaded.
    url = re.search(r"Dashboard: (\S+)", first)
    token_command = re.search(r"admin token: (.+)", first)
    assert url and token_command, first
    token = subprocess.check_output(token_command.group(1), shell=True, text=True).strip()
    page = f"{url.group(1)}#token={token}"
    dom = run_chromium(page, tmp_path / "profile", "--dump-dom")
    for expected in ("gpu-nv1", "gpu-amd1", "cpu-llama1", demo.DEMO_MODEL):
        assert expected in dom, f"{expected} not on the dashboard"
    assert token not in dom  # the token moves to sessionStorage and out of the page
    shot = tmp_path / "dashboard.png"
    run_chromium(page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,900")
    assert shot.stat().st_size > 10_000
    if keep := os.environ.get("MODELFLEET_SCREENSHOT"):
        shutil.copyfile(shot, keep)

    # A port in use stops another `up` before it touches anything: the loopback port the
    # router would be published on, and (once the fleet's bridge exists) the file server's.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = new_fleet_name()
        refused = modelfleet("demo", "up", "--fleet", other, "--router-port", str(port))
    assert refused.returncode != 0
    assert f"port 127.0.0.1:{port} is already in use" in refused.stderr
    assert "--router-port" in refused.stderr
    assert localfleet.status(other) == [] and not network_exists(demo.network_name(other))
    with socket.socket() as busy:
        busy.bind((gateway, 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = modelfleet(
            "demo", "up", "--fleet", demo_run.fleet,
            "--files-port", str(port), "--router-port", str(demo_run.router_port),
        )  # fmt: skip
    assert refused.returncode != 0
    assert f"port {gateway}:{port} is already in use" in refused.stderr
    assert "--files-port" in refused.stderr

    # A second up changes nothing.
    second = demo_run.up()
    assert "0 operations changed something" in second, demo_run.changed_operations()
    assert "why: resident" in second

    # Down leaves nothing behind.
    removed = demo_run.down()
    assert "removed 3 containers" in removed
    assert localfleet.status(demo_run.fleet) == []
    assert not network_exists(network)
    assert not demo.state_dir(demo_run.fleet).exists()
    assert not preflight.port_in_use("127.0.0.1", demo_run.router_port)
