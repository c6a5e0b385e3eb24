"""A backend that refuses what a request asks for is not a failing backend.

llama-server answers 500 (``server_error``) for requests it cannot take by the way it was
started, and 501 (``not_supported_error``) for an API it was not started with: measured on the
cached build (``deploy/lab/llama.py``) with the demo's model and flags (``--no-jinja``, no
``--embeddings``, a model without FIM tokens). Counted as 5xx, a client's tool calls, images
or embeddings ejected the only backend of a model after five different requests, for every
client (found on the demo: ``no healthy backend can serve model 'gemma3-270m'``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.router.conftest import router_of

# (status, error) llama-server answered on the cached build, and what sets it off in a body
REFUSALS: dict[str, tuple[int, dict[str, Any]]] = {
    "tools": (500, {"message": "tools param requires --jinja flag", "type": "server_error"}),
    "tool_choice": (
        500,
        {"message": "tool_choice param requires --jinja flag", "type": "server_error"},
    ),
    "image": (
        500,
        {
            "message": "image input is not supported - hint: if this is unexpected, you may "
            "need to provide the mmproj",
            "type": "server_error",
        },
    ),
    "reasoning_format": (
        500,
        {"message": "Unknown reasoning format: bogus", "type": "server_error"},
    ),
    "field_type": (
        500,
        {
            "message": "[json.exception.type_error.302] type must be string, but is number",
            "type": "server_error",
        },
    ),
}
NO_EMBEDDINGS = {
    "code": 501,
    "message": "This server does not support embeddings. Start it with `--embeddings`",
    "type": "not_supported_error",
}


def _refusal(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    text = json.dumps(body)
    for trigger, (status, error) in REFUSALS.items():
        if f'"{trigger}' in text or (trigger == "image" and "image_url" in text):
            return status, {"code": status, **error}
    return None


async def llama_server_like(aiohttp_server: Any) -> tuple[str, list[dict[str, Any]]]:
    """A backend answering as the cached llama-server did: its refusals, else one token."""
    seen: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        refused = _refusal(body)
        if refused:
            return web.json_response({"error": refused[1]}, status=refused[0])
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}], "model": body["model"]}
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "hi"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response({"choices": [choice], "model": body["model"]})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in (chunk, done):
            await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def embeddings(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response({"error": NO_EMBEDDINGS}, status=501)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


def chat(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


TOOL = {"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}
IMAGE = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]

# (front path, body for request i, the backend's message the client must read)
CASES = [
    ("/v1/chat/completions", lambda i: chat(f"q{i}", tools=[TOOL]), "requires --jinja flag"),
    ("/v1/chat/completions", lambda i: chat(f"q{i}", tool_choice="auto"), "requires --jinja"),
    ("/api/chat", lambda i: chat(f"q{i}", tools=[TOOL], stream=False), "requires --jinja flag"),
    (
        "/v1/chat/completions",
        lambda i: chat([*IMAGE, {"type": "text", "text": f"q{i}"}]),
        "image input is not supported",
    ),
    (
        "/v1/chat/completions",
        lambda i: chat(f"q{i}", reasoning_format="bogus"),
        "Unknown reasoning format",
    ),
    (
        "/v1/chat/completions",
        lambda i: chat(f"q{i}", field_type=5),
        "[json.exception.type_error.302]",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), CASES)
async def test_a_request_the_backend_cannot_take_is_a_400_and_ejects_nothing(
    aiohttp_server, make_router, path, body, message
) -> None:
    url, seen = await llama_server_like(aiohttp_server)
    client = await make_router(
        [{"name": "ls", "url": url, "kind": "openai"}],
        health={"interval_s": 30, "fail_threshold": 1, "error_rate_min_errors": 3},
    )
    router = router_of(client)
    for i in range(8):  # all different: each would count on its own
        resp = await client.post(path, json=body(i))
        assert resp.status == 400, await resp.text()
        answer = await resp.json()
        error = answer["error"]["message"] if path.startswith("/v1/") else answer["error"]
        assert message in error
        assert resp.headers["X-Modelfleet-Reason"] == "backend-error"
    state = router.fleet.backends["ls"]
    assert state.healthy and not state.failures
    assert len(seen) == 8  # each reached the backend once: not retried elsewhere
    resp = await client.post("/v1/chat/completions", json=chat("an ordinary question"))
    assert resp.status == 200
    assert (await resp.json())["choices"][0]["message"]["content"] == "hi"


async def test_an_api_the_backend_was_not_started_with_is_its_501_and_ejects_nothing(
    aiohttp_server, make_router
) -> None:
    url, seen = await llama_server_like(aiohttp_server)
    client = await make_router(
        [{"name": "ls", "url": url, "kind": "openai"}],
        health={"interval_s": 30, "fail_threshold": 1, "error_rate_min_errors": 3},
    )
    for i in range(8):
        resp = await client.post("/v1/embeddings", json={"model": "m", "input": f"text {i}"})
        assert resp.status == 501
        assert "does not support embeddings" in (await resp.json())["error"]["message"]
    state = router_of(client).fleet.backends["ls"]
    assert state.healthy and not state.failures
    assert len(seen) == 8
    resp = await client.post("/v1/chat/completions", json=chat("an ordinary question"))
    assert resp.status == 200
