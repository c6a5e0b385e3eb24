"""End to end: the real router process in front of two real llama-server routers.

Two ``llama-server`` processes in router mode (each can load ``gemma-a`` and ``gemma-b``,
``--models-max 1``) serve the real gemma3 270M GGUF; ``modelfleet-router`` runs as its own
process from a router.yaml. Residency routing is observed on real loads: the second request
for a model goes where the first one loaded it, and the headers say why. Assertions are on
structure, never on the (parroted) text.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab import llama
from tests.real.conftest import router_process

pytestmark = pytest.mark.real
ADMIN = "e2e-admin-token"


def request(
    url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=180) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0,
        "max_tokens": 8,
        **extra,
    }


@pytest.fixture
def fleet(
    start_llama_server: Callable[..., llama.LlamaServer], tmp_path: Path
) -> Iterator[tuple[str, Path, dict[str, llama.LlamaServer]]]:
    """Two llama-server routers, and modelfleet-router in front; yields (url, log, servers)."""
    preset = llama.write_models_preset(tmp_path / "models.ini", {"gemma-a": {}, "gemma-b": {}})
    servers = {
        "cpu-1": start_llama_server(models_preset=preset, models_max=1),
        "cpu-2": start_llama_server(models_preset=preset, models_max=1),
    }
    port = llama.free_port()
    access_log = tmp_path / "access.jsonl"
    config = {
        "listen": f"127.0.0.1:{port}",
        "admin_token": ADMIN,
        "access_log": str(access_log),
        "refresh_interval_s": 0.5,
        "health": {"interval_s": 1.0},
        "backends": [
            {
                "name": name,
                "url": server.url,
                "kind": "llama-server",
                "host": name,
                "slots": 1,
                "max_loaded": 1,
            }
            for name, server in servers.items()
        ],
    }
    with router_process(config, tmp_path) as url:
        yield url, access_log, servers


def loaded_models(server: llama.LlamaServer) -> set[str]:
    with urllib.request.urlopen(server.url + "/models", timeout=30) as resp:
        data = json.loads(resp.read())["data"]
    return {m["id"] for m in data if m["status"]["value"] == "loaded"}


def test_residency_routing_on_real_llama_servers(fleet) -> None:
    url, access_log, servers = fleet

    # 1. cold: the router picks a backend and llama-server loads gemma-a there
    status, headers, raw = request(url + "/v1/chat/completions", chat("gemma-a"))
    assert status == 200, raw
    home = headers["X-Modelfleet-Backend"]
    assert headers["X-Modelfleet-Reason"] == "load-fits"
    reply = json.loads(raw)
    assert reply["object"] == "chat.completion" and reply["usage"]["completion_tokens"] > 0
    assert loaded_models(servers[home]) == {"gemma-a"}

    # 2. warm: the next requests go where the model already is, and say so
    for _ in range(2):
        status, headers, _ = request(url + "/v1/chat/completions", chat("gemma-a"))
        assert status == 200
        assert (headers["X-Modelfleet-Backend"], headers["X-Modelfleet-Reason"]) == (
            home,
            "resident",
        )

    # 3. an Ollama client on the same resident model: NDJSON, ns durations, done_reason
    body = {
        "model": "gemma-a",
        "messages": [{"role": "user", "content": "Say hello."}],
        "options": {"num_predict": 6, "temperature": 0},
    }
    status, headers, raw = request(url + "/api/chat", body)
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    assert headers["X-Modelfleet-Backend"] == home
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert 0 < final["eval_count"] <= 6
    assert isinstance(final["eval_duration"], int) and final["eval_duration"] > 0  # ns
    assert final["total_duration"] >= final["eval_duration"]

    # 4. another model: loading it next to gemma-a would evict it (--models-max 1), so the
    #    router loads it on the other host without evicting anything
    status, headers, _ = request(url + "/v1/chat/completions", chat("gemma-b"))
    assert status == 200
    other = headers["X-Modelfleet-Backend"]
    assert other != home and headers["X-Modelfleet-Reason"] == "load-fits"
    assert loaded_models(servers[home]) == {"gemma-a"}
    assert loaded_models(servers[other]) == {"gemma-b"}

    # 5. the fleet-wide /api/ps names the backend holding each model
    expected = {("gemma-a", home), ("gemma-b", other)}
    deadline = time.monotonic() + 30
    while True:  # until a refresh confirmed it from the backends themselves
        status, _, raw = request(url + "/api/ps")
        where = {(m["name"], m["backend"]) for m in json.loads(raw)["models"]}
        if where == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert where == expected

    # 6. streaming SSE through the router from a real backend
    status, headers, raw = request(url + "/v1/chat/completions", chat("gemma-b", stream=True))
    events = [line for line in raw.decode().splitlines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]" and headers["X-Modelfleet-Reason"] == "resident"

    # 7. admin state and access log agree with what happened
    status, _, raw = request(url + "/admin/state", token=ADMIN)
    state = json.loads(raw)
    assert {b["name"]: b["mode"] for b in state["backends"]} == {
        "cpu-1": "router",
        "cpu-2": "router",
    }
    records = [json.loads(line) for line in access_log.read_text().splitlines()]
    reasons = [(r["model"], r["backend"], r["reason"]) for r in records]
    assert reasons[0] == ("gemma-a", home, "load-fits")
    assert reasons[1] == ("gemma-a", home, "resident")
    assert all(r["status"] == 200 and r["ttft_s"] is not None for r in records)
