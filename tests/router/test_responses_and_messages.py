"""``/v1/responses`` and Anthropic ``/v1/messages``: routed by residency like chat.

Over the Ollama stand-in (which serves both, as Ollama does since 0.13.3) and a
generic OpenAI-compatible server that serves neither (a 501 naming its kind).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.router.conftest import admin, openai_upstream, router_of, sse

MODEL = "qwen2.5:0.5b"


def responses(stream: bool = False, model: str = MODEL) -> dict[str, Any]:
    return {"model": model, "input": "say hi", "max_output_tokens": 8, "stream": stream}


def messages(stream: bool = False, model: str = MODEL) -> dict[str, Any]:
    body = {"model": model, "max_tokens": 8, "stream": stream}
    return body | {"messages": [{"role": "user", "content": "say hi"}]}


async def test_responses_whole_and_streamed_go_where_the_model_is_resident(
    ollama, make_router, tmp_path
):
    a, b = ollama(models=[MODEL]), ollama(models=[MODEL])
    log = tmp_path / "access.jsonl"
    client = await make_router(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}], access_log=str(log)
    )
    first = await client.post("/v1/responses", json=responses())
    assert first.status == 200, await first.text()
    where = first.headers["X-Modelfleet-Backend"]
    assert first.headers["X-Modelfleet-Reason"] == "load-fits"
    whole = await first.json()
    assert whole["object"] == "response" and whole["status"] == "completed"
    assert whole["output"][0]["content"][0]["type"] == "output_text"
    assert whole["usage"]["output_tokens"] > 0
    second = await client.post("/v1/responses", json=responses(stream=True))
    assert second.status == 200
    assert second.headers["X-Modelfleet-Backend"] == where  # resident there now
    assert second.headers["X-Modelfleet-Reason"] == "resident"
    events = await sse(second)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == events[-1]["response"]["output"][0]["content"][0]["text"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["path"] for r in records] == ["/v1/responses"] * 2
    assert records[0]["completion_tokens"] == whole["usage"]["output_tokens"]
    router = router_of(client)
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert any(
        line.startswith("modelfleet_requests_total")
        and 'api="openai"' in line
        and 'status="200"' in line
        for line in metrics
    )
    assert router.fleet.backends[where].models[MODEL].status == "loaded"


async def test_messages_whole_and_streamed_with_x_api_key(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], api_keys=["client-key"])
    denied = await client.post("/v1/messages", json=messages())
    assert denied.status == 401
    error = await denied.json()
    assert error["type"] == "error" and error["error"]["type"] == "authentication_error"
    key = {"x-api-key": "client-key", "anthropic-version": "2023-06-01"}
    resp = await client.post("/v1/messages", json=messages(), headers=key)
    assert resp.status == 200, await resp.text()
    whole = await resp.json()
    assert whole["type"] == "message" and whole["role"] == "assistant"
    assert whole["content"][0]["type"] == "text" and whole["stop_reason"] in (
        "end_turn",
        "max_tokens",
    )
    streamed = await client.post("/v1/messages", json=messages(stream=True), headers=key)
    assert streamed.status == 200
    events = await sse(streamed)
    assert [e["type"] for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-1]["type"] == "message_stop"


async def test_messages_errors_come_in_anthropic_shape(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    unknown = await client.post("/v1/messages", json=messages(model="nope"))
    assert unknown.status == 404
    body = await unknown.json()
    assert body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": body["error"]["message"]},
    }
    assert "nope" in body["error"]["message"]
    # the backend's own error comes back in the Anthropic shape with its message
    server.app.settings.poison = "poisoned"
    bad = await client.post("/v1/messages", json=messages() | {"system": "poisoned"})
    assert bad.status == 500
    body = await bad.json()
    assert body["type"] == "error" and "stand-in poison" in body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        # the Messages API requires max_tokens: without it llama-server generates until its
        # context is full (2,038 tokens, 100 s on the demo) where Ollama answers 400
        ("/v1/messages", {"max_tokens": None}, "max_tokens: required"),
        ("/v1/messages", {"max_tokens": 0}, "max_tokens: expected a positive integer"),
        ("/v1/messages", {"max_tokens": "8"}, "max_tokens: expected a positive integer"),
        ("/v1/messages", {"messages": "say hi"}, "messages: expected a list of message"),
        ("/v1/messages", {"messages": [{"content": "x"}]}, "messages[0].role: required"),
        ("/v1/messages", {"system": 5}, "system: expected a string or a list of text"),
        ("/v1/messages", {"stream": "yes"}, "stream: expected true or false"),
        ("/v1/messages/count_tokens", {"messages": None}, "messages: required"),
        ("/v1/responses", {"input": 42}, "input: expected a string or a list of"),
        ("/v1/responses", {"max_output_tokens": 0}, "max_output_tokens: expected a positive"),
        ("/v1/responses", {"instructions": ["x"]}, "instructions: expected a string"),
    ],
)
async def test_bodies_these_apis_refuse_get_400_before_any_backend_loads_a_model(
    ollama, make_router, path, body, error
):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    base = responses() if path == "/v1/responses" else messages()
    sent = {k: v for k, v in (base | body).items() if v is not None}
    resp = await client.post(path, json=sent)
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    message = answer["error"]["message"]
    assert message.startswith(error), message
    if path.startswith("/v1/messages"):
        assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    assert server.app.inference_requests == 0
    assert MODEL not in router_of(client).fleet.backends["o"].models or (
        router_of(client).fleet.backends["o"].models[MODEL].status == "cold"
    )


async def test_count_tokens_needs_no_max_tokens(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "say hi"}]}
    resp = await client.post("/v1/messages/count_tokens", json=body)
    assert resp.status != 400, await resp.text()


async def test_backend_that_does_not_serve_them_gives_501_naming_its_kind(
    aiohttp_server, make_router
):
    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"choices": []})

    url = await openai_upstream(aiohttp_server, chat, "m")
    client = await make_router([{"name": "gen", "url": url, "kind": "openai"}])
    resp = await client.post("/v1/responses", json=responses(model="m"))
    assert resp.status == 501
    message = (await resp.json())["error"]["message"]
    assert "backend gen (kind openai) does not serve /v1/responses" in message
    resp = await client.post("/v1/messages", json=messages(model="m"))
    assert resp.status == 501
    body = await resp.json()
    assert body["type"] == "error" and "(kind openai)" in body["error"]["message"]
    assert router_of(client).fleet.backends["gen"].healthy  # not a fault of the backend


async def test_a_load_that_never_happened_is_not_left_loading(ollama, make_router):
    # Ollama has no /v1/messages/count_tokens: the request was routed as a load, answered
    # 501, and the router listed the model "loading" there for the whole load timeout
    server = ollama(models=[MODEL, "nomic-embed-text:latest"])
    client = await make_router([{"name": "o", "url": server.url}])
    router = router_of(client)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "say hi"}]}
    resp = await client.post("/v1/messages/count_tokens", json=body)
    assert resp.status == 501
    assert router.fleet.backends["o"].models[MODEL].status == "cold"
    # an error the backend answers before it loads (an embedding model asked to chat)
    chat = {"model": "nomic-embed-text:latest", "messages": [{"role": "user", "content": "x"}]}
    resp = await client.post("/api/chat", json=chat)
    assert resp.status == 400
    assert router.fleet.backends["o"].models["nomic-embed-text:latest"].status == "cold"
    await router.refresh_all()
    assert (await (await client.get("/api/ps")).json())["models"] == []
    # and the next request loads it as a load of its own, not as one to join
    resp = await client.post("/v1/messages", json=messages())
    assert resp.status == 200 and resp.headers["X-Modelfleet-Reason"] == "load-fits"


async def test_a_backend_that_does_not_serve_a_path_hands_it_to_one_that_does(
    ollama, llama_swap, make_router
):
    # Ollama has no /v1/messages/count_tokens, llama-swap passes it to llama-server: the
    # request goes on to the backend that serves it, and the next one goes there directly
    shared = "shared"
    swap = llama_swap({"models": {shared: {"cmd": "llama-server -m s.gguf --port ${PORT}"}}})
    server = ollama(catalog=[{"name": shared, "size_mb": 100}], models=[shared], vram_mb=8192)
    client = await make_router(
        [
            {
                "name": "o",
                "url": server.url,
                "models": [{"name": shared, "backend_model": f"{shared}:latest"}],
            },
            {"name": "w", "url": swap.url, "kind": "llama-swap"},
        ]
    )
    load = {"model": shared}  # resident on Ollama only: count_tokens goes there first
    assert (await client.post("/admin/backends/o/load", json=load, headers=admin(client))).ok
    body = {"model": shared, "messages": [{"role": "user", "content": "say hi"}]}
    resp = await client.post("/v1/messages/count_tokens", json=body)
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Modelfleet-Backend"] == "w"
    assert resp.headers["X-Modelfleet-Attempts"] == "2"
    assert (await resp.json())["input_tokens"] > 0
    assert server.app.not_found == 1
    again = await client.post("/v1/messages/count_tokens", json=body)
    assert again.status == 200 and again.headers["X-Modelfleet-Backend"] == "w"
    assert again.headers["X-Modelfleet-Attempts"] == "1"
    assert server.app.not_found == 1  # not asked again
    # what both serve still goes by residency: chat is not affected
    chat = await client.post("/v1/messages", json=messages(model=shared))
    assert chat.status == 200


async def test_a_path_no_backend_serves_is_a_501_without_a_load(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    body = {"model": MODEL, "messages": [{"role": "user", "content": "say hi"}]}
    first = await client.post("/v1/messages/count_tokens", json=body)
    assert first.status == 501
    message = (await first.json())["error"]["message"]
    assert "backend o (kind ollama) does not serve /v1/messages/count_tokens" in message
    assert first.headers["X-Modelfleet-Reason"] == "not-served"
    assert server.app.not_found == 1
    second = await client.post("/v1/messages/count_tokens", json=body)
    assert second.status == 501 and (await second.json())["error"]["message"] == message
    assert server.app.not_found == 1  # known: answered without asking
    assert router_of(client).fleet.backends["o"].models[MODEL].status == "cold"


async def test_a_404_for_one_model_does_not_skip_the_backend_for_others(
    aiohttp_server, make_router
):
    # an OpenAI-compatible server answers 404 for a model it lacks on a path it has: what is
    # remembered is that path for that model only
    async def responses_api(request: web.Request) -> web.Response:
        body = await request.json()
        if body["model"] != "b":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        return web.json_response({"object": "response", "status": "completed", "output": []})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "a"}, {"id": "b"}]})

    app = web.Application()
    app.router.add_post("/v1/responses", responses_api)
    app.router.add_get("/v1/models", models)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    client = await make_router([{"name": "gen", "url": url, "kind": "openai"}])
    assert (await client.post("/v1/responses", json=responses(model="a"))).status == 501
    resp = await client.post("/v1/responses", json=responses(model="b"))
    assert resp.status == 200, await resp.text()


async def test_hung_backend_fails_over_before_the_first_byte(ollama, make_router):
    a, b = ollama(models=[MODEL]), ollama(models=[MODEL])
    client = await make_router(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}], first_byte_timeout_s=0.5
    )
    router = router_of(client)
    first = await client.post("/v1/messages", json=messages())
    home = first.headers["X-Modelfleet-Backend"]
    other = "b" if home == "a" else "a"
    hung = a if home == "a" else b
    async with client.session.post(hung.url + "/standin/faults", json={"mode": "hang"}) as resp:
        assert resp.status == 200
    for path, body in (("/v1/responses", responses(stream=True)), ("/v1/messages", messages())):
        resp = await client.post(path, json=body)
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Modelfleet-Backend"] == other
        await resp.read()
        if path == "/v1/responses":  # tried on the hung one first, then failed over
            assert resp.headers["X-Modelfleet-Attempts"] == "2"
    assert router.fleet.backends[home].counters["timeout"] >= 1
    async with client.session.post(hung.url + "/standin/faults", json={"mode": "ok"}) as resp:
        assert resp.status == 200


def models_named_in(events: list[dict[str, Any]]) -> set[str]:
    """Every model name a stream's events carry, at the top or one level down."""
    holders = list(events) + [
        e[key] for e in events for key in ("response", "message") if isinstance(e.get(key), dict)
    ]
    return {h["model"] for h in holders if "model" in h}


async def test_streams_say_the_name_the_client_asked_for(ollama, make_router):
    """``fast`` is the catalog's name of the backend's qwen2.5:0.5b: the Responses events and
    Anthropic's ``message_start`` say ``fast`` too, as whole answers and chat chunks do."""
    server = ollama(models=[MODEL])
    entry = {"name": "fast", "backend_model": MODEL}
    client = await make_router([{"name": "o", "url": server.url, "models": [entry]}])
    for path, body in (
        ("/v1/responses", responses(stream=True, model="fast")),
        ("/v1/messages", messages(stream=True, model="fast")),
    ):
        resp = await client.post(path, json=body)
        assert resp.status == 200, await resp.text()
        events = await sse(resp)
        assert models_named_in(events) == {"fast"}, path
        whole = await client.post(path, json={**body, "stream": False})
        assert (await whole.json())["model"] == "fast"


async def test_a_stream_that_ends_without_a_newline_is_passed_on_whole(aiohttp_server, make_router):
    """Renaming works line by line; a stream whose last line has no newline (here the
    ``[DONE]``) must not have that line kept back."""
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}
    chunk: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk"}
    chunk |= {"model": "upstream-name", "choices": [choice]}

    async def chat(request: web.Request) -> web.Response:
        body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]"
        return web.Response(body=body, content_type="text/event-stream")

    url = await openai_upstream(aiohttp_server, chat, "upstream-name")
    entry = {"name": "m", "backend_model": "upstream-name"}
    client = await make_router([{"name": "gen", "url": url, "kind": "openai", "models": [entry]}])
    resp = await client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert resp.status == 200
    text = (await resp.read()).decode()
    assert text.endswith("data: [DONE]")
    assert json.loads(text.split("\n")[0][len("data: ") :]) == {**chunk, "model": "m"}
