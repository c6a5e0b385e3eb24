"""What every deployed host must show: services, ports, files as planned, models, the router.

Each test runs once per ``--hosts`` entry and checks what the plan puts on that host; where
the plan puts nothing of the kind (a router on a GPU host), the test checks it is absent.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from modelfleet.deploy.plan import BackendInstance, HostPlan
from modelfleet.deploy.render import admin_token_file, render_host
from modelfleet.roles.knobs import role_values
from modelfleet.roles.ollama.facts import normalize_tag

ALIVE_PATH = {"ollama": "/api/version", "llama-swap": "/health", "llama-server": "/health"}


def instances(node: HostPlan) -> tuple[BackendInstance, ...]:
    if not node.instances:
        pytest.skip(f"{node.name} runs no backend")
    return node.instances


def http(host: Any, method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    """curl on the host itself: (status, headers dict, parsed JSON body or text)."""
    parts = ["curl", "-s", "-m", "120", "-X", method, "-D", "/dev/stderr", url]
    if body is not None:
        parts += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    if token:
        parts += ["-H", f"Authorization: Bearer {token}"]
    # The header goes through a variable, never the command line or a log.
    result = host.run(" ".join(shlex.quote(p) for p in parts))
    status_line, *header_lines = result.stderr.strip().splitlines() or ["HTTP/1.1 000"]
    status = int(status_line.split()[1])
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    try:
        payload = json.loads(result.stdout)
    except ValueError:
        payload = result.stdout
    return status, headers, payload


def test_backend_services_active(host: Any, node: HostPlan) -> None:
    for inst in instances(node):
        service = host.service(inst.service_name)
        assert service.is_running, f"{inst.service_name} is not running on {node.name}"
        assert service.is_enabled, f"{inst.service_name} is not enabled on {node.name}"


def test_backend_ports_listening_and_alive(host: Any, node: HostPlan) -> None:
    for inst in instances(node):
        assert host.socket(f"tcp://{inst.bind}:{inst.port}").is_listening
        status, _, _ = http(host, "GET", f"http://127.0.0.1:{inst.port}{ALIVE_PATH[inst.kind]}")
        assert status == 200, f"{inst.name}: {ALIVE_PATH[inst.kind]} answered {status}"


def test_files_as_planned(host: Any, node: HostPlan, deployed: Any, node_data: Any) -> None:
    files = render_host(deployed.plan, node, node_data)
    if not files:
        pytest.skip(f"{node.name} holds no rendered files")
    for planned in files:
        on_host = host.file(planned.path)
        assert on_host.exists, f"{planned.path} is missing on {node.name}"
        assert on_host.content_string == planned.content, (
            f"{planned.path} on {node.name} differs from a fresh render of the plan"
        )


def test_models_present(host: Any, node: HostPlan) -> None:
    for inst in instances(node):
        if inst.kind == "ollama":
            status, _, tags = http(host, "GET", f"http://127.0.0.1:{inst.port}/api/tags")
            assert status == 200
            have = {normalize_tag(m["name"]) for m in tags["models"]}
            for model in inst.models:
                assert model.ollama and normalize_tag(model.ollama) in have, (
                    f"{inst.name}: {model.ollama} not pulled (has {sorted(have)})"
                )
        else:
            for model in inst.models:
                assert model.gguf and model.gguf_path
                gguf = host.file(model.gguf_path)
                assert gguf.exists, f"{inst.name}: {model.gguf_path} is missing"
                assert gguf.sha256sum == model.gguf.sha256, f"{model.gguf_path}: wrong sha256"


def router_service(deployed: Any, node: HostPlan) -> str:
    return str(role_values(deployed.data(node))["router_service"])


def test_router_release_is_a_router_only_environment(
    host: Any, node: HostPlan, deployed: Any
) -> None:
    """The live release holds the router and its run-time dependencies, not the deploy tool."""
    if not node.router:
        pytest.skip(f"{node.name} runs no router")
    root = role_values(deployed.data(node))["router_root"]
    python = f"{root}/current/bin/python"
    assert host.run(f"{python} -c 'import aiohttp, pydantic, yaml, prometheus_client'").rc == 0
    for name in ("pyinfra", "paramiko", "gevent", "pynvml"):
        found = host.run(f"{python} -c 'import {name}'")
        assert found.rc != 0, f"the router release on {node.name} has {name} installed"


def test_router_where_planned(host: Any, node: HostPlan, deployed: Any) -> None:
    """Router hosts serve /readyz over the planned backends; no other host runs a router."""
    service = host.service(router_service(deployed, node))
    if not node.router:
        assert not service.is_running, f"{node.name} runs a router it was not planned to"
        assert not host.file(admin_token_file(deployed.plan)).exists
        return
    assert service.is_running and service.is_enabled
    # systemd holds the listening socket, so a new release takes it over without refusals.
    socket_unit = host.service(f"{router_service(deployed, node)}.socket")
    assert socket_unit.is_running and socket_unit.is_enabled
    status, _, body = http(host, "GET", f"http://127.0.0.1:{deployed.plan.router.port}/readyz")
    assert status == 200, body
    planned = {inst.name for inst in deployed.plan.instances}
    assert set(body["backends"]) <= planned and body["backends"], body


def test_admin_token_root_only_and_never_logged(
    host: Any, node: HostPlan, deployed: Any, node_data: Any
) -> None:
    token_file = host.file(admin_token_file(deployed.plan))
    if not node.router:
        assert not token_file.exists, f"{node.name} holds the router's admin token"
        return
    assert token_file.exists
    assert (token_file.user, token_file.group, token_file.mode) == ("root", "root", 0o600)
    token = token_file.content_string.strip()
    assert len(token) >= 32
    files = render_host(deployed.plan, node, node_data)
    config = host.file(next(f.path for f in files if f.role == "router")).content_string
    journal = host.run(f"journalctl -u {router_service(deployed, node)} --no-pager").stdout
    assert token not in config and token not in journal


def test_router_routes_a_real_request_to_llama_server(
    host: Any, node: HostPlan, deployed: Any
) -> None:
    """Drain every other backend of a llama-server model, ask the router, undrain.

    Runs on router hosts; elsewhere it checks the host does not answer as a router.
    """
    plan = deployed.plan
    if not node.router:
        status, _, _ = http(host, "GET", f"http://127.0.0.1:{plan.router.port}/readyz")
        assert status != 200, f"{node.name} answers /readyz like a router"
        return
    servers = [inst for inst in plan.instances if inst.kind == "llama-server" and inst.models]
    if not servers:
        pytest.skip("the fleet has no llama-server instance with models")
    target, model = servers[0], servers[0].models[0]
    others = [
        inst.name
        for inst in plan.instances
        if inst.name != target.name and any(m.name == model.name for m in inst.models)
    ]
    base = f"http://127.0.0.1:{plan.router.port}"
    token = host.file(admin_token_file(plan)).content_string.strip()
    try:
        for name in others:
            assert http(host, "POST", f"{base}/admin/backends/{name}/drain", token=token)[0] == 200
        request = {
            "model": model.name,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            "temperature": 0,
        }
        status, headers, body = http(host, "POST", f"{base}/v1/chat/completions", request)
    finally:
        for name in others:
            http(host, "POST", f"{base}/admin/backends/{name}/undrain", token=token)
    assert status == 200, body
    assert headers.get("x-modelfleet-backend") == target.name
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] > 0
    # llama.cpp's own fingerprint (b<build>-<commit>), not a stand-in's.
    assert "standin" not in str(body.get("system_fingerprint", ""))
