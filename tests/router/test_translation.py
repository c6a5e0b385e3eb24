"""Ollama clients in front of OpenAI-speaking backends (llama-swap stand-in, openai kind),
and OpenAI clients in front of Ollama."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from modelfleet.router.proxy import parse_duration
from modelfleet.router.translate import (
    OllamaReply,
    Timing,
    chat_request,
    generate_request,
    infill_request,
)
from tests.router.conftest import admin, ndjson, openai_upstream, router_of, sse, wait_for

SWAP_CONFIG = {
    "models": {
        "small": {"cmd": "llama-server -m small.gguf --port ${PORT}", "metadata": {"size_mb": 500}},
        "other": {"cmd": "llama-server -m other.gguf --port ${PORT}", "metadata": {"size_mb": 500}},
    }
}


async def swap_router(llama_swap, make_router, **kwargs):
    swap = llama_swap(SWAP_CONFIG, **kwargs)
    client = await make_router([{"name": "swap", "url": swap.url, "kind": "llama-swap"}])
    return swap, client


async def test_ollama_chat_over_llama_swap_streams_ndjson_with_ns_durations(
    llama_swap, make_router
):
    _, client = await swap_router(llama_swap, make_router)
    resp = await client.post(
        "/api/chat",
        json={"model": "small", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert resp.headers["X-Modelfleet-Backend"] == "swap"
    lines = await ndjson(resp)
    pieces, final = lines[:-1], lines[-1]
    assert pieces and all(p["message"]["role"] == "assistant" for p in pieces)
    assert all(p["done"] is False and p["model"] == "small" for p in pieces)
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == len(pieces)
    assert final["prompt_eval_count"] >= 1
    assert final["total_duration"] >= final["eval_duration"] >= 0
    assert isinstance(final["total_duration"], int)  # nanoseconds (units: test_reply_uses_...)
    assert final["load_duration"] > 0  # this request waited for the swap


async def test_ollama_generate_non_streaming_num_predict_gives_length(llama_swap, make_router):
    _, client = await swap_router(llama_swap, make_router)
    resp = await client.post(
        "/api/generate",
        json={"model": "small", "prompt": "abc", "stream": False, "options": {"num_predict": 2}},
    )
    body = await resp.json()
    assert body["done"] is True and body["done_reason"] == "length"
    assert body["eval_count"] == 2 and len(body["response"].split()) == 2
    assert body["context"] == []


async def test_ollama_embed_over_llama_swap(llama_swap, make_router):
    _, client = await swap_router(llama_swap, make_router)
    body = await (await client.post("/api/embed", json={"model": "small", "input": "x"})).json()
    assert len(body["embeddings"]) == 1 and body["prompt_eval_count"] == 1
    legacy = await (
        await client.post("/api/embeddings", json={"model": "small", "prompt": "x"})
    ).json()
    assert legacy["embedding"] == body["embeddings"][0]


async def test_keep_alive_zero_unloads_on_llama_swap(llama_swap, make_router):
    swap, client = await swap_router(llama_swap, make_router)
    await client.post(
        "/api/generate",
        json={"model": "small", "prompt": "a", "stream": False, "keep_alive": 0},
        headers=admin(client),  # an explicit unload: the admin's to ask
    )
    router = router_of(client)
    await wait_for(lambda: swap.app.scheduler.models["small"].state == "stopped")
    await router.refresh_all()
    assert router.fleet.backends["swap"].models["small"].status == "cold"


async def test_keep_alive_duration_is_kept_by_the_router(llama_swap, make_router):
    swap, client = await swap_router(llama_swap, make_router)
    await client.post(
        "/api/generate",
        json={"model": "small", "prompt": "a", "stream": False, "keep_alive": "300ms"},
        headers=admin(client),  # below management.keep_alive_min_s: clients get clamped
    )
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["small"]
    assert not ps["models"][0]["expires_at"].startswith("0001")
    await wait_for(lambda: swap.app.scheduler.models["small"].state == "stopped")


async def test_openai_front_streams_sse_from_llama_swap(llama_swap, make_router):
    _, client = await swap_router(llama_swap, make_router)
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "small", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = await sse(resp)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_openai_front_over_ollama_uses_its_v1(ollama, make_router):
    server = ollama(models=["qwen2.5:0.5b"])
    client = await make_router([{"name": "o1", "url": server.url}])
    body = {"model": "qwen2.5:0.5b", "messages": [{"role": "user", "content": "x"}]}
    resp = await client.post("/v1/chat/completions", json=body)
    data = await resp.json()
    assert data["object"] == "chat.completion" and data["choices"][0]["message"]["content"]
    assert data["usage"]["completion_tokens"] > 0
    stream = await client.post("/v1/chat/completions", json={**body, "stream": True})
    events = await sse(stream)
    assert events[-1] == "[DONE]" and events[0]["object"] == "chat.completion.chunk"
    completions = await client.post(
        "/v1/completions", json={"model": "qwen2.5:0.5b", "prompt": "x"}
    )
    assert (await completions.json())["choices"][0]["text"]
    emb = await client.post("/v1/embeddings", json={"model": "qwen2.5:0.5b", "input": "x"})
    assert emb.status == 200


async def test_v1_models_lists_the_fleet(ollama, llama_swap, make_router):
    server = ollama(models=["qwen2.5:0.5b"])
    swap = llama_swap(SWAP_CONFIG)
    client = await make_router(
        [{"name": "o1", "url": server.url}, {"name": "s", "url": swap.url, "kind": "llama-swap"}]
    )
    data = (await (await client.get("/v1/models")).json())["data"]
    assert {m["id"] for m in data} == {"qwen2.5:0.5b", "small", "other"}
    assert all(m["object"] == "model" for m in data)
    one = await (await client.get("/v1/models/small")).json()
    assert one["id"] == "small" and one["backends"] == ["s"]
    missing = await client.get("/v1/models/nope")
    assert missing.status == 404 and (await missing.json())["error"]["type"] == "not_found_error"


async def test_tool_calls_become_objects_for_ollama_clients(make_router, aiohttp_server):
    """An OpenAI backend streams tool-call argument fragments; Ollama gets one object."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["tools"][0]["function"]["name"] == "get_weather"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        fragments = ['{"ci', 'ty": "Tok', 'yo"}']
        for i, frag in enumerate(fragments):
            call: dict[str, Any] = {"index": 0, "function": {"arguments": frag}}
            if i == 0:
                call.update(id="c1", type="function")
                call["function"]["name"] = "get_weather"
            delta = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
            await resp.write(b"data: " + json.dumps(delta).encode() + b"\n\n")
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        await resp.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        return resp

    url = await openai_upstream(aiohttp_server, chat, "toolmodel")
    client = await make_router([{"name": "oa", "url": url, "kind": "openai"}])
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    resp = await client.post(
        "/api/chat",
        json={"model": "toolmodel", "messages": [{"role": "user", "content": "?"}], "tools": tools},
    )
    lines = await ndjson(resp)
    calls = [line["message"]["tool_calls"] for line in lines if line["message"].get("tool_calls")]
    call = {"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
    assert calls == [[call]]
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"


def test_chat_request_maps_options_format_images_and_tool_history():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "see", "images": ["QUJD"]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            {"role": "tool", "content": "42", "tool_name": "f"},
        ],
        "options": {"num_predict": 5, "temperature": 0, "num_ctx": 8192, "stop": ["x"]},
        "format": "json",
        "think": False,
        "stream": False,
    }
    out = chat_request(body, "upstream-m")
    assert out["model"] == "upstream-m" and out["stream"] is False
    assert out["max_tokens"] == 5 and out["temperature"] == 0 and out["stop"] == ["x"]
    assert "num_ctx" not in out
    assert out["response_format"] == {"type": "json_object"}
    assert out["chat_template_kwargs"] == {"enable_thinking": False}
    image = out["messages"][0]["content"][1]
    assert image == {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}
    assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert out["messages"][2]["name"] == "f"


def test_generate_request_templated_vs_raw():
    path, out = generate_request({"prompt": "p", "system": "s"}, "m")
    assert path == "/v1/chat/completions"
    assert [m["role"] for m in out["messages"]] == ["system", "user"]
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    path, out = generate_request({"prompt": "p", "raw": True, "stream": False}, "m")
    assert path == "/v1/completions" and out["prompt"] == "p"
    _, out = generate_request({"prompt": "p", "format": {"type": "object"}}, "m")
    assert out["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_reply_uses_server_timings_in_nanoseconds():
    reply = OllamaReply(model="m", chat=True, timing=Timing(start=0.0, first_byte=1.0, end=2.0))
    reply.whole(
        {
            "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
            "timings": {"prompt_ms": 12.5, "predicted_ms": 100.0},
        }
    )
    final = reply.final(streamed=False)
    assert final["message"]["content"] == "hi" and final["done_reason"] == "length"
    assert final["prompt_eval_duration"] == 12_500_000
    assert final["eval_duration"] == 100_000_000
    assert final["total_duration"] == 2_000_000_000
    assert (final["prompt_eval_count"], final["eval_count"]) == (3, 4)


@pytest.mark.parametrize(
    ("num_predict", "max_tokens"),
    # Ollama's runners stop at num_predict only when it is > 0: 0 and -1 mean no limit
    # (llama-server took max_tokens 0 as one token: measured on the demo)
    [(5, 5), (1, 1), (0, None), (-1, None), (-2, None)],
)
def test_num_predict_becomes_max_tokens_only_when_it_limits(num_predict, max_tokens):
    body = {"model": "m", "prompt": "x", "options": {"num_predict": num_predict}}
    assert generate_request(body, "m")[1].get("max_tokens") == max_tokens
    assert generate_request(body | {"raw": True}, "m")[1].get("max_tokens") == max_tokens
    chat = {"model": "m", "messages": [], "options": {"num_predict": num_predict}}
    assert chat_request(chat, "m").get("max_tokens") == max_tokens
    infill = {"model": "m", "prompt": "def f(", "suffix": ")", "options": chat["options"]}
    assert infill_request(infill, "m").get("n_predict") == max_tokens


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300),
        ("1h30m", 5400),
        ("300ms", 0.3),
        ("1.5h", 5400),
        (".5s", 0.5),
        ("5.s", 5),
        ("2h45m30.5s", 9930.5),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),  # micro sign
        ("1\u03bcs", 1e-6),  # Greek mu: Go takes both
        ("+5m", 300),
        (" 5m ", 300),
        (0, 0),
        ("0", 0),
        ("300", 300),  # seconds in a string, as OLLAMA_KEEP_ALIVE takes them
        ("-1", -1),
        (-1, -1),
        ("-1m", -60),
        (1.5, 1.5),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    # Go's time.ParseDuration refuses each string (Ollama answers 400); numbers must be finite
    ["soon", "", ".s", "..5s", "1.2.3s", "-", "+", "-.", "5 m", "5m-3s", "1d", "1e3s",
     "NaN", "inf", "infinity", "1_000", "1e400", "\u0663s", "\u00b3s",
     None, True, float("nan"), float("inf"), float("-inf"), 10**400],
)  # fmt: skip
def test_parse_duration_refuses_what_is_not_a_duration(value):
    assert parse_duration(value) is None
