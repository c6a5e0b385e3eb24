"""Proxying edge cases: errors inside a translated stream, compressed answers, a client that
goes away while the router writes to it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.router.conftest import ndjson, openai_upstream, router_of, sse

BACKEND_ERROR = "the request exceeds the available context size, try increasing it"
ERROR_OBJ = {"code": 400, "message": BACKEND_ERROR, "type": "exceed_context_size_error"}
CHUNK = {"choices": [{"index": 0, "delta": {"content": "Hel"}}], "model": "m"}


def _sse_error_handler(error_line: bytes) -> Any:
    """A backend that streams one token, then an error event, then ends the stream cleanly
    (what llama-server does when generation fails after the answer started)."""

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + json.dumps(CHUNK).encode() + b"\n\n")
        await resp.write(error_line)
        await resp.write_eof()
        return resp

    return chat


ERROR_EVENTS = {
    # current llama-server (format_oai_sse({"error": ...})), the stream then ends
    "data-error": b"data: " + json.dumps({"error": ERROR_OBJ}).encode() + b"\n\n",
    # older llama-server builds: an SSE "error:" field, then [DONE]
    "error-field": b"error: " + json.dumps(ERROR_OBJ).encode() + b"\n\ndata: [DONE]\n\n",
}


@pytest.mark.parametrize("form", sorted(ERROR_EVENTS))
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"messages": [{"role": "user", "content": "x"}]}),
        ("/api/generate", {"prompt": "x"}),
    ],
)
async def test_backend_error_mid_stream_reaches_an_ollama_client_as_an_error_line(
    aiohttp_server, make_router, form, path, body
):
    url = await openai_upstream(aiohttp_server, _sse_error_handler(ERROR_EVENTS[form]), "m")
    client = await make_router([{"name": "o", "url": url, "kind": "openai"}])
    resp = await client.post(path, json={"model": "m", **body})
    assert resp.status == 200
    lines = await ndjson(resp)
    assert lines[-1] == {"error": BACKEND_ERROR}  # Ollama's mid-stream error line
    assert not any(line.get("done") for line in lines)  # not an answer that looks complete
    # the backend answered this request's content: its health is left alone
    assert router_of(client).fleet.backends["o"].healthy


async def _compressing_chat(request: web.Request) -> web.StreamResponse:
    """Streams like any OpenAI server, compressed when the client accepts it (a reverse proxy
    with gzip on, a hosted API)."""
    body = await request.json()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    resp.enable_compression()  # honours the request's Accept-Encoding
    await resp.prepare(request)
    chunks = [
        {"id": "c", "model": body["model"], "choices": [{"index": 0, "delta": {"content": "hi"}}]},
        {
            "id": "c",
            "model": body["model"],
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
    ]
    for chunk in chunks:
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@pytest.mark.parametrize(
    ("path", "stream"),
    [("/v1/chat/completions", False), ("/v1/chat/completions", True), ("/api/chat", False)],
)
async def test_a_backend_that_compresses_its_answers_is_read_correctly(
    aiohttp_server, make_router, path, stream
):
    url = await openai_upstream(aiohttp_server, _compressing_chat, "m")
    client = await make_router([{"name": "z", "url": url, "kind": "openai"}])
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    resp = await client.post(path, json=body)
    assert resp.status == 200, await resp.text()
    if stream:
        events = await sse(resp)
        assert events[0]["choices"][0]["delta"]["content"] == "hi"
    elif path == "/api/chat":
        assert (await resp.json())["message"]["content"] == "hi"
    else:
        assert (await resp.json())["choices"][0]["message"]["content"] == "hi"
    state = router_of(client).fleet.backends["z"]
    assert state.healthy and not state.counters


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_a_client_gone_while_the_router_writes_does_not_count_against_the_backend(
    faulty_backend, make_router, monkeypatch, path
):
    """A client that hangs up (FIN or RST) closes the router's transport before aiohttp
    cancels the handler: a write in between raises aiohttp's "Cannot write to closing
    transport". That is the client's doing, not the backend's."""
    backend = await faulty_backend("ok", delay_s=0.05)
    client = await make_router(
        [{"name": "b", "url": backend.url, "kind": "openai"}],
        health={"interval_s": 30, "fail_threshold": 1},
    )
    write = web.StreamResponse.write

    async def write_to_a_closing_transport(self: web.StreamResponse, data: bytes) -> None:
        if "X-Modelfleet-Backend" in self.headers:  # the router's answer, not the backend's
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        await write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", write_to_a_closing_transport)
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    resp = await client.post(path, json=body)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    state = router_of(client).fleet.backends["b"]
    assert state.healthy and state.consecutive_failures == 0
    assert not state.counters  # no "cut" charged to the backend


def _error_at_once_handler(error_line: bytes) -> Any:
    """llama-server refusing a request after its 200 went out (a prompt over the context):
    nothing but the error event."""

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(error_line)
        await resp.write_eof()
        return resp

    return chat


@pytest.mark.parametrize("form", sorted(ERROR_EVENTS))
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_an_error_event_in_an_assembled_answer_is_the_backends_answer(
    aiohttp_server, make_router, form, path
):
    """A non-streaming request is streamed from the backend and put together; an error event
    in that stream is the backend's answer to this request: its status and message, not
    retried, and no transport failure charged to the backend."""
    url = await openai_upstream(aiohttp_server, _error_at_once_handler(ERROR_EVENTS[form]), "m")
    client = await make_router(
        [{"name": "o", "url": url, "kind": "openai"}], health={"fail_threshold": 1}
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": False}
    resp = await client.post(path, json=body)
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    message = answer["error"] if path == "/api/chat" else answer["error"]["message"]
    assert message == BACKEND_ERROR
    assert resp.headers["X-Modelfleet-Reason"] == "backend-error"
    assert resp.headers["X-Modelfleet-Attempts"] == "1"
    state = router_of(client).fleet.backends["o"]
    assert state.healthy and not state.counters
