"""Real inference through the cached llama.cpp llama-server and the gemma3 270M GGUF.

The model is a base model that parrots: every assertion is on structure (status, shapes,
token counts, SSE framing), never on the generated text.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelfleet.deploy.lab import llama

pytestmark = pytest.mark.real

ChatBody = dict[str, Any]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read())


def post(url: str, body: ChatBody) -> tuple[int, str, bytes]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read()


def chat_body(model: str, **extra: Any) -> ChatBody:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0,
        "max_tokens": 8,
        **extra,
    }


def test_health_and_models(start_llama_server: Callable[..., llama.LlamaServer]) -> None:
    server = start_llama_server(alias="gemma")
    assert get_json(server.url + "/health") == {"status": "ok"}
    models = get_json(server.url + "/v1/models")
    assert [m["id"] for m in models["data"]] == ["gemma"]
    assert models["data"][0]["meta"]["n_ctx_train"] > 0


def test_chat_non_streaming(start_llama_server: Callable[..., llama.LlamaServer]) -> None:
    server = start_llama_server(alias="gemma")
    status, ctype, raw = post(server.url + "/v1/chat/completions", chat_body("gemma"))
    reply = json.loads(raw)
    assert (status, ctype.split(";")[0]) == (200, "application/json")
    assert reply["object"] == "chat.completion"
    [choice] = reply["choices"]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 < reply["usage"]["completion_tokens"] <= 8
    assert reply["timings"]["predicted_n"] == reply["usage"]["completion_tokens"]


def test_chat_streaming_sse(start_llama_server: Callable[..., llama.LlamaServer]) -> None:
    server = start_llama_server(alias="gemma")
    status, ctype, raw = post(server.url + "/v1/chat/completions", chat_body("gemma", stream=True))
    assert (status, ctype.split(";")[0]) == (200, "text/event-stream")
    events = [e for e in raw.decode().split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert any(deltas)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] in ("stop", "length")


def test_metrics_count_real_tokens(start_llama_server: Callable[..., llama.LlamaServer]) -> None:
    server = start_llama_server(alias="gemma")
    post(server.url + "/v1/chat/completions", chat_body("gemma"))
    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    predicted = [
        line for line in metrics.splitlines() if line.startswith("llamacpp:tokens_predicted_total")
    ]
    assert predicted
    assert float(predicted[0].split()[-1]) > 0


def test_router_mode_loads_on_demand_and_evicts_lru(
    start_llama_server: Callable[..., llama.LlamaServer], tmp_path: Path
) -> None:
    preset = llama.write_models_preset(tmp_path / "models.ini", {"gemma-a": {}, "gemma-b": {}})
    router = start_llama_server(models_preset=preset, models_max=1)

    def states() -> dict[str, str]:
        return {m["id"]: m["status"]["value"] for m in get_json(router.url + "/models")["data"]}

    assert states() == {"gemma-a": "unloaded", "gemma-b": "unloaded"}
    status, _, raw = post(router.url + "/v1/chat/completions", chat_body("gemma-a"))
    assert status == 200
    assert json.loads(raw)["model"] == "gemma-a"
    assert states() == {"gemma-a": "loaded", "gemma-b": "unloaded"}
    post(router.url + "/v1/chat/completions", chat_body("gemma-b"))
    assert states() == {"gemma-a": "unloaded", "gemma-b": "loaded"}  # --models-max 1: LRU out


def test_llama_swap_standin_execs_and_swaps_real_llama_servers(
    llama_server_bin: Path, gguf_model_path: Path
) -> None:
    """The llama-swap stand-in in exec mode: real processes, real readiness, real inference."""
    from modelfleet.deploy.lab.standins import llama_swap

    cmd = (
        f"{llama_server_bin} --host 127.0.0.1 --port ${{PORT}} -m {gguf_model_path}"
        " --no-jinja --chat-template gemma -c 1024 -np 1 -t 1"
    )
    config = {
        "startPort": llama.free_port(),
        "models": {
            "gemma-a": {"cmd": cmd, "proxy": "http://127.0.0.1:${PORT}"},
            "gemma-b": {"cmd": cmd, "proxy": "http://127.0.0.1:${PORT}"},
        },
    }
    with llama_swap.start_in_thread(config, mode="exec") as swap:
        status, _, raw = post(swap.url + "/v1/chat/completions", chat_body("gemma-a"))
        reply = json.loads(raw)
        assert status == 200
        assert 0 < reply["usage"]["completion_tokens"] <= 8
        first = swap.app.scheduler.models["gemma-a"].upstream
        assert isinstance(first, llama_swap.CommandUpstream)
        process = first.process
        assert process is not None

        status, _, raw = post(swap.url + "/v1/chat/completions", chat_body("gemma-b", stream=True))
        assert raw.decode().rstrip().endswith("data: [DONE]")
        running = get_json(swap.url + "/running")["running"]
        assert [(r["model"], r["state"]) for r in running] == [("gemma-b", "ready")]
        assert process.poll() is not None  # the swap stopped gemma-a's llama-server
