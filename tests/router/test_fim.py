"""Fill in the middle: ``suffix`` reaches llama-server's ``/infill``; Ollama gets it as is.

The llama-server here is a small aiohttp server answering ``/infill`` in llama-server's own
format (``content``, ``stop``, ``tokens_predicted``; SSE ``data:`` lines when streaming), as
the cached real build does (tests/real checks the real one).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from modelfleet.router.proxy import Call, plan
from tests.router.conftest import ndjson, router_of, sse, wait_for

MODEL = "qwen2.5:0.5b"


async def fim_backend(aiohttp_server) -> tuple[str, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def infill(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        pieces = ["  return ", "a + b"]
        final = {"content": "", "stop": True, "stop_type": "eos", "tokens_predicted": 2}
        final["tokens_evaluated"] = 9
        if not body.get("stream"):
            return web.json_response({**final, "content": "".join(pieces)})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in pieces:
            line = json.dumps({"content": piece, "stop": False})
            await resp.write(f"data: {line}\n\n".encode())
        await resp.write(f"data: {json.dumps(final)}\n\n".encode())
        return resp

    async def v1_models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "coder", "meta": {"n_ctx": 4096}}]})

    app = web.Application()
    app.router.add_post("/infill", infill)
    app.router.add_get("/v1/models", v1_models)
    app.router.add_get("/health", v1_models)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


async def _client(aiohttp_server, make_router):
    url, seen = await fim_backend(aiohttp_server)
    backend = {"name": "ls", "url": url, "kind": "llama-server", "models": [{"name": "coder"}]}
    client = await make_router([backend])
    await wait_for(
        lambda: router_of(client).fleet.backends["ls"].models["coder"].status == "loaded"
    )
    return client, seen


FIM = {"model": "coder", "prompt": "def add(a, b):\n", "suffix": "\n\nprint(add(1, 2))"}


async def test_ollama_generate_with_suffix_goes_to_infill(aiohttp_server, make_router):
    client, seen = await _client(aiohttp_server, make_router)
    body = {**FIM, "options": {"num_predict": 16, "temperature": 0}}
    resp = await client.post("/api/generate", json={**body, "stream": False})
    assert resp.status == 200, await resp.text()
    whole = await resp.json()
    assert whole["response"] == "  return a + b" and whole["done"] is True
    assert whole["eval_count"] == 2 and whole["prompt_eval_count"] == 9
    sent = seen[-1]
    assert sent["input_prefix"] == FIM["prompt"] and sent["input_suffix"] == FIM["suffix"]
    assert sent["n_predict"] == 16 and sent["temperature"] == 0 and sent["model"] == "coder"
    assert sent["stream"] is True  # asked as a stream, put together in the router
    streamed = await ndjson(await client.post("/api/generate", json=FIM))
    assert "".join(line["response"] for line in streamed) == "  return a + b"
    assert streamed[-1]["done"] is True and streamed[-1]["done_reason"] == "stop"


async def test_openai_completions_with_suffix_goes_to_infill(aiohttp_server, make_router):
    client, seen = await _client(aiohttp_server, make_router)
    body = {"model": "coder", "prompt": FIM["prompt"], "suffix": FIM["suffix"], "max_tokens": 8}
    whole = await (await client.post("/v1/completions", json=body)).json()
    assert whole["object"] == "text_completion" and whole["model"] == "coder"
    assert whole["choices"][0]["text"] == "  return a + b"
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert seen[-1]["n_predict"] == 8 and seen[-1]["input_suffix"] == FIM["suffix"]
    events = await sse(await client.post("/v1/completions", json={**body, "stream": True}))
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "  return a + b"


async def test_ollama_backend_gets_suffix_as_is(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    body = {"model": MODEL, "prompt": "def f(", "suffix": "):\n", "stream": False}
    call = Call("ollama", "/api/generate", "generate", body, MODEL, False, "r1")
    up = plan(call, router_of(client).fleet.backends["o"])
    assert up.path == "/api/generate" and up.translation == "raw"
    assert up.body["suffix"] == "):\n" and up.body["prompt"] == "def f("
    resp = await client.post("/api/generate", json=body)
    assert resp.status == 200 and (await resp.json())["done"] is True
