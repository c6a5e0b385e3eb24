"""Issue 9: one bad request must not take a backend away; management is the admin's; no 5xx
from the router's own code on any input. One test (or more) per numbered case of the issue."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import yaml
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from modelfleet.router.__main__ import main as router_main
from modelfleet.router.app import create_app
from modelfleet.router.config import ConfigError, RouterConfig, load_config
from tests.router.conftest import (
    ADMIN_TOKEN,
    POISON_MESSAGE,
    admin,
    ndjson,
    router_of,
    sse,
    wait_for,
)

MODEL = "qwen2.5:0.5b"
POISON = "<<poison>>"


def chat(content: str = "x", model: str = "m", stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}


def two_backends(a, b, **extra) -> list[dict]:
    return [
        {"name": "a", "url": a.url, "kind": "openai", **extra},
        {"name": "b", "url": b.url, "kind": "openai", **extra},
    ]


# -- 1. a fault caused by one request's content ejects healthy backends --------------------


async def test_case1_poisoned_requests_leave_every_backend_healthy(faulty_backend, make_router):
    a = await faulty_backend("ok", poison=POISON, delay_s=0.01)
    b = await faulty_backend("ok", poison=POISON, delay_s=0.01)
    # fail_threshold 1: before the fix, one poisoned request ejected a backend at once
    client = await make_router(two_backends(a, b), health={"interval_s": 30, "fail_threshold": 1})
    router = router_of(client)

    async def ordinary(i: int) -> int:
        resp = await client.post("/v1/chat/completions", json=chat(f"ordinary {i}"))
        return resp.status

    async def poisoned(i: int) -> None:
        resp = await client.post("/api/chat", json={**chat(f"{POISON} {i % 2}"), "stream": False})
        assert resp.status == 500  # the backend's status and its own message, Ollama shape
        assert (await resp.json()) == {"error": POISON_MESSAGE}
        assert resp.headers["X-Modelfleet-Reason"] == "backend-error"
        assert resp.headers["X-Modelfleet-Attempts"] == "1"  # not retried elsewhere

    results = await asyncio.gather(
        *(ordinary(i) for i in range(30)), *(poisoned(i) for i in range(6))
    )
    statuses = [r for r in results if r is not None]
    assert statuses == [200] * 30  # two poisoned requests (3 times each): 0 ordinary failed
    assert all(s.healthy for s in router.fleet.backends.values())
    assert a.requests + b.requests == 36  # each poisoned request reached one backend once


async def test_case1_a_load_the_backend_refuses_is_the_requests_fault(ollama, make_router):
    """Found by the fuzzer: an empty generate for an embedding model (a "load") is answered
    400 by Ollama; it used to become a 502 that counted against the backend."""
    embed = "nomic-embed-text:latest"
    server = ollama(models=[embed])
    client = await make_router([{"name": "o", "url": server.url}], health={"fail_threshold": 1})
    resp = await client.post("/api/generate", json={"model": embed})
    assert resp.status == 400
    assert "does not support generate" in (await resp.json())["error"]
    assert resp.headers["X-Modelfleet-Reason"] == "backend-error"
    assert router_of(client).fleet.backends["o"].healthy


# -- 2. any client can manage models for the whole fleet -----------------------------------


async def test_case2_model_management_needs_the_admin_token(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], api_keys=["client-key"])
    key = {"Authorization": "Bearer client-key"}
    for method, path, body in [
        ("POST", "/api/pull", {"model": "llama3.2:1b", "insecure": True}),
        ("DELETE", "/api/delete", {"model": MODEL}),
        ("POST", "/api/copy", {"source": MODEL, "destination": "x"}),
        ("POST", "/api/create", {"model": "x", "from": MODEL}),
        ("POST", "/api/push", {"model": MODEL}),
    ]:
        resp = await client.request(method, path, json=body, headers=key)
        assert resp.status == 403, path
        assert "admin token" in (await resp.json())["error"]
    assert server.app.puller.pull_counts == {}
    # keep_alive 0 with an empty prompt unloads everywhere, < 0 pins: admin acts too
    await client.post("/api/generate", json={"model": MODEL}, headers=key)  # load: allowed
    for keep_alive in (0, -1, "-1m"):
        body = {"model": MODEL, "prompt": "", "keep_alive": keep_alive}
        resp = await client.post("/api/generate", json=body, headers=key)
        assert resp.status == 403, keep_alive
    assert router_of(client).fleet.backends["o"].models[MODEL].status == "loaded"
    # the admin token works on the client paths and may do all of it
    pulled = await client.post("/api/pull", json={"model": "llama3.2:1b"}, headers=admin(client))
    assert (await ndjson(pulled))[-1]["status"] == "success"
    deleted = await client.delete(
        "/api/delete", json={"model": "llama3.2:1b"}, headers=admin(client)
    )
    assert deleted.status == 200, await deleted.text()
    unload = {"model": MODEL, "prompt": "", "keep_alive": 0}
    resp = await client.post("/api/generate", json=unload, headers=admin(client))
    assert (await resp.json())["done_reason"] == "unload"


async def test_case2_a_config_knob_grants_management_without_unknown_fields(
    ollama, make_router, monkeypatch
):
    server = ollama(models=[])
    client = await make_router(
        [{"name": "o", "url": server.url}], management={"clients_may_manage": True}
    )
    sent: list[dict] = []
    session_post = router_of(client).http().post

    def spy(url, **kwargs):
        if url.endswith("/api/pull"):
            sent.append(kwargs["json"])
        return session_post(url, **kwargs)

    monkeypatch.setattr(router_of(client).http(), "post", spy)
    resp = await client.post("/api/pull", json={"model": MODEL, "insecure": True, "x": 1})
    assert (await ndjson(resp))[-1]["status"] == "success"
    assert sent == [{"model": MODEL, "stream": True}]  # insecure and unknowns not forwarded


async def test_case2_client_keep_alive_is_clamped_to_the_configured_range(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router(
        [{"name": "o", "url": server.url}],
        management={"keep_alive_min_s": 120, "keep_alive_max_s": 600},
    )
    for asked, kept in [(0, 120), (-1, 600), ("10h", 600), ("5m", 300), (1, 120)]:
        body = {"model": MODEL, "prompt": "x", "stream": False, "keep_alive": asked}
        assert (await client.post("/api/generate", json=body)).status == 200
        runner = server.app.scheduler.runners[MODEL]
        assert runner.keep_alive_s == kept, (asked, runner.keep_alive_s)


@pytest.mark.parametrize(
    "raw",
    [
        {"api_keys": ["good", ""]},
        {"api_keys": ["  "]},
        {"admin_token": ""},
        {"backends": [{"name": "b", "url": "http://127.0.0.1:1", "api_key": " "}]},
    ],
)
def test_case2_empty_keys_are_refused_when_the_config_loads(tmp_path, raw):
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="empty or whitespace"):
        load_config(path)


# -- 3. the router answers 500 to malformed input ------------------------------------------


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ("hello", "messages: expected a list of message objects (got a string)"),
        (5, "messages: expected a list of message objects (got a number)"),
        ({}, "messages: expected a list of message objects (got an object)"),
        ([1], "messages[0]: expected a message object (got a number)"),
        ([None], "messages[0]: expected a message object (got null)"),
        ([{"role": "user", "tool_calls": [1]}], "messages[0].tool_calls[0]: expected a tool"),
        ([{"role": "user", "images": 5}], "messages[0].images: expected a list of base64"),
    ],
)
async def test_case3_malformed_messages_to_a_translated_backend(
    faulty_backend, make_router, messages, where
):
    backend = await faulty_backend("ok")
    client = await make_router([{"name": "b", "url": backend.url, "kind": "openai"}])
    resp = await client.post("/api/chat", json={"model": "m", "messages": messages})
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(where)
    assert backend.requests == 0


async def test_case3_deep_bodies_bad_encodings_and_odd_fields(faulty_backend, make_router, caplog):
    backend = await faulty_backend("ok")
    client = await make_router([{"name": "b", "url": backend.url, "kind": "openai"}])
    deep = b'{"model": "m", "messages": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    for path in ("/api/chat", "/v1/chat/completions"):
        resp = await client.post(path, data=deep, headers={"Content-Type": "application/json"})
        assert resp.status == 400 and "nested" in await resp.text(), path
    gzip = await client.post(
        "/api/chat",
        data=b'{"model": "m"}',
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert gzip.status == 400 and "decoded" in (await gzip.json())["error"]
    assert "Traceback" not in caplog.text and "Unhandled exception" not in caplog.text
    latin = await client.post("/v1/chat/completions", data=b'{"model": "\xff"}')
    assert latin.status == 400 and latin.headers["Content-Type"].startswith("application/json")
    pull = await client.post(
        "/api/pull", json={"model": "m", "backend": ["a"]}, headers=admin(client)
    )
    assert pull.status == 400
    assert (await pull.json())["error"] == "backend: expected a backend name (string) (got a list)"
    assert backend.requests == 0


async def _raw_request(port: int, header: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(chat()).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + header
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_case3_non_utf8_auth_headers_get_401_not_500(faulty_backend, make_router, caplog):
    backend = await faulty_backend("ok")
    client = await make_router(
        [{"name": "b", "url": backend.url, "kind": "openai"}], api_keys=["k\xe9y"]
    )
    port = client.server.port
    assert port is not None
    for header in (b"Authorization: Bearer \xff\xfe\x80", b"X-Api-Key: \xc3\x28"):
        answer = await _raw_request(port, header)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 401"), (header, status_line)
        assert b'"authentication_error"' in answer
    # a key that is not ASCII still works when sent as UTF-8 bytes
    answer = await _raw_request(port, "Authorization: Bearer k\xe9y".encode())
    assert answer.startswith(b"HTTP/1.1 200")
    assert "Traceback" not in caplog.text


# -- 4. a client that stops reading holds its slot forever ---------------------------------


async def test_case4_a_client_that_stops_reading_is_cut_off_and_frees_its_slot(
    faulty_backend, make_router
):
    flood = await faulty_backend("flood")
    client = await make_router(
        [{"name": "f", "url": flood.url, "kind": "openai"}], client_write_timeout_s=0.3
    )
    router = router_of(client)
    port = client.server.port
    assert port is not None
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps(chat(stream=True)).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # ... and never reads
    try:
        await wait_for(lambda: router.fleet.backends["f"].in_flight() == 1)
        await wait_for(lambda: flood.cancelled == 1)  # upstream cancelled
        await wait_for(lambda: router.fleet.backends["f"].in_flight() == 0)  # slot free
        # the next client is served at once (the backend's only slot is free again)
        flood.mode = "ok"
        resp = await client.post("/v1/chat/completions", json=chat(stream=True))
        assert resp.status == 200 and (await sse(resp))[-1] == "[DONE]"
    finally:
        sock.close()


# -- 5. a backend that accepts but never answers holds requests for load_timeout_s ---------


async def test_case5_resident_model_times_out_on_first_byte_and_the_hang_counts(
    faulty_backend, make_router
):
    hung, good = await faulty_backend("hang"), await faulty_backend("ok")
    client = await make_router(
        [
            {"name": "a-hung", "url": hung.url, "kind": "openai"},
            {"name": "b-good", "url": good.url, "kind": "openai"},
        ],
        first_byte_timeout_s=0.2,  # load_timeout_s stays 300
        health={"interval_s": 30, "fail_threshold": 100, "error_rate_min_errors": 3},
    )
    router = router_of(client)
    good.delay_s = 0.5  # busy, so the hung one keeps being chosen until it is ejected
    replies = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=chat(str(i), stream=True)) for i in range(8))
    )
    for resp in replies:
        assert resp.status == 200 and (await sse(resp))[-1] == "[DONE]"
        assert resp.headers["X-Modelfleet-Backend"] == "b-good"
    state = router.fleet.backends["a-hung"]
    assert state.counters["timeout"] >= 1
    await wait_for(lambda: not state.healthy)  # its probe answers 200 all along
    assert "error rate" in (state.last_error or "")


async def test_case5_every_backend_timing_out_gives_504_with_the_message(
    faulty_backend, make_router
):
    hung = await faulty_backend("hang")
    client = await make_router(
        [{"name": "h", "url": hung.url, "kind": "openai"}], first_byte_timeout_s=0.2
    )
    resp = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert resp.status == 504
    message = (await resp.json())["error"]["message"]
    assert "backend h: timeout: no answer within 0.2s" in message


# -- 6. secrets are echoed in errors -------------------------------------------------------

SECRET = "sk-live-5ecret-value"


@pytest.mark.parametrize(
    "text",
    [
        f"admin_token: {SECRET}\napi_keys: [{SECRET}\n",
        f"admin_token: {SECRET}\napi_keys:\n  - '{SECRET}\n",
        f"api_keys:\n  - {SECRET}: x: y\n",
        f'admin_token: "{SECRET}\n',
        f"api_keys: {SECRET}\n",
        f"backends:\n  - name: b\n    url: nope\n    api_key: {SECRET}\n",
    ],
)
def test_case6_config_errors_never_show_secrets_on_stderr(tmp_path, text):
    path = tmp_path / "router.yaml"
    path.write_text(text)
    result = CliRunner().invoke(router_main, ["--config", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output
    assert SECRET not in result.output and SECRET[3:12] not in result.output


async def test_case6_admin_reload_never_shows_secrets(ollama, aiohttp_client, tmp_path):
    server = ollama(models=[MODEL])
    path = tmp_path / "router.yaml"
    raw = {"admin_token": ADMIN_TOKEN, "backends": [{"name": "o", "url": server.url}]}
    path.write_text(yaml.safe_dump(raw))
    client: TestClient = await aiohttp_client(create_app(load_config(path), path))
    for broken in (
        f"admin_token: {ADMIN_TOKEN}\napi_keys: [{SECRET}\n",
        f"admin_token: {ADMIN_TOKEN}\napi_keys:\n  - {SECRET}: x: y\n",
        f"admin_token: {ADMIN_TOKEN}\napi_keys: [{SECRET}, '']\n",
    ):
        path.write_text(broken)
        resp = await client.post("/admin/reload", headers=admin(client))
        text = await resp.text()
        assert resp.status == 400 and "api_keys" in text
        assert SECRET not in text and ADMIN_TOKEN not in text


# -- 7. every 503 lacks a reason to retry later --------------------------------------------


async def test_case7_no_healthy_backend_503_has_retry_after(faulty_backend, make_router):
    backend = await faulty_backend("ok")
    client = await make_router(
        [{"name": "b", "url": backend.url, "kind": "openai"}],
        health={"interval_s": 0.05, "fail_threshold": 1},
    )
    router = router_of(client)
    state = router.fleet.backends["b"]
    backend.health_status = 500
    await wait_for(lambda: not state.healthy)
    state.next_check = asyncio.get_running_loop().time() + 41.5  # its next probe
    resp = await client.post("/v1/chat/completions", json=chat())
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "42"
    ready = await client.get("/readyz")
    assert ready.status == 503 and "Retry-After" in ready.headers


async def test_case7_queue_retry_after_comes_from_observed_service_times(
    faulty_backend, make_router
):
    backend = await faulty_backend("ok", delay_s=0.05)
    client = await make_router(
        [{"name": "b", "url": backend.url, "kind": "openai"}],
        queue={"max_per_model": 1, "retry_after_s": 1},
        policy={"default_service_s": 500},  # the old estimate: (1 + 1) x 500 s
    )
    router = router_of(client)
    assert (await client.post("/v1/chat/completions", json=chat("warm up"))).status == 200
    await wait_for(lambda: "m" in router.fleet.service_s)  # released just after the answer
    assert router.fleet.service_s["m"] < 5
    backend.delay_s = 1.0
    running = asyncio.ensure_future(client.post("/v1/chat/completions", json=chat("1")))
    await wait_for(lambda: router.fleet.backends["b"].in_flight() == 1)
    queued = asyncio.ensure_future(client.post("/v1/chat/completions", json=chat("2")))
    await wait_for(lambda: router.fleet.queued.get("m") == 1)
    refused = await client.post("/v1/chat/completions", json=chat("3"))
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) <= 2  # 2 waiting x ~0.05 s, at least 1
    assert (await running).status == (await queued).status == 200


async def test_case7_failed_backends_give_502_with_the_last_message(faulty_backend, make_router):
    a, b = await faulty_backend("502"), await faulty_backend("502")
    client = await make_router(two_backends(a, b), health={"interval_s": 30})
    resp = await client.post("/v1/chat/completions", json=chat())
    assert resp.status == 502
    message = (await resp.json())["error"]["message"]
    assert "502 Bad Gateway" in message and "tried a, b" in message
    assert "Retry-After" not in resp.headers


# -- 8. smaller ----------------------------------------------------------------------------


async def test_case8_empty_keep_alive_is_an_error_not_an_unload(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    await client.post("/api/generate", json={"model": MODEL})
    resp = await client.post(
        "/api/generate",
        json={"model": MODEL, "prompt": "", "keep_alive": ""},
        headers=admin(client),
    )
    assert resp.status == 400 and "keep_alive" in (await resp.json())["error"]
    assert router_of(client).fleet.backends["o"].models[MODEL].status == "loaded"


@pytest.mark.parametrize("keep_alive", [".s", "1.2.3s", "+", "NaN", float("nan"), "1e400"])
async def test_case8_keep_alive_that_is_no_duration_is_a_400(ollama, make_router, keep_alive):
    # ".s" was a 500 ("could not convert string to float"); "+" was taken as 0 (an unload)
    # and NaN was passed on as the model's keep-alive
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    for headers in ({}, admin(client)):
        body = {"model": MODEL, "prompt": "x", "stream": False, "keep_alive": keep_alive}
        resp = await client.post("/api/generate", json=body, headers=headers)
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"].startswith("keep_alive: expected a duration")
    assert server.app.inference_requests == 0


async def test_case8_stream_cut_by_the_client_is_logged_as_499(
    faulty_backend, make_router, tmp_path
):
    stalling = await faulty_backend("stall")
    log = tmp_path / "access.jsonl"
    client = await make_router(
        [{"name": "s", "url": stalling.url, "kind": "openai"}], access_log=str(log)
    )
    resp = await client.post("/v1/chat/completions", json=chat(stream=True))
    assert (await resp.content.readline()).startswith(b"data: ")  # the first chunk came
    resp.close()  # ... and the client hangs up mid-stream
    await wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 1)
    record = json.loads(log.read_text())
    assert record["status"] == 499 and "client closed" in record["error"]


async def test_case8_non_json_error_bodies_come_in_the_api_shape(aiohttp_server, make_router):
    from aiohttp import web

    from tests.router.conftest import openai_upstream

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="model not found, sorry", status=404)

    url = await openai_upstream(aiohttp_server, plain, "m")
    client = await make_router([{"name": "p", "url": url, "kind": "openai"}])
    openai = await client.post("/v1/chat/completions", json=chat())
    assert openai.status == 404
    assert (await openai.json())["error"]["message"] == "model not found, sorry"
    ollama = await client.post("/api/chat", json=chat())
    assert (await ollama.json()) == {"error": "model not found, sorry"}


async def test_case8_mid_stream_failure_is_labelled_as_a_cut_stream(faulty_backend, make_router):
    cut = await faulty_backend("cut")
    client = await make_router([{"name": "c", "url": cut.url, "kind": "openai"}])
    resp = await client.post("/v1/chat/completions", json=chat(stream=True))
    events = await sse(resp)
    message = events[-1]["error"]["message"]
    assert "stream cut" in message and "connect" not in message
    assert router_of(client).fleet.backends["c"].counters["cut"] == 1


def test_config_knobs_have_defaults():
    cfg = RouterConfig()
    assert cfg.first_byte_timeout_s < cfg.load_timeout_s
    assert cfg.management.clients_may_manage is False
    assert cfg.health.error_rate_min_errors >= 2
