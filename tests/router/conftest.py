"""Fixtures for in-process router tests.

Backends are the project's stand-ins (``deploy/lab/standins``: Ollama and llama-swap, stdlib
servers on 127.0.0.1:<free port> in a thread). ``faulty_backend`` adds the few failure modes
a faithful stand-in does not have (5xx storms, stalls, hangs), as a tiny OpenAI-shaped
aiohttp server on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from modelfleet.deploy.lab.standins import llama_swap as swap_standin
from modelfleet.deploy.lab.standins import ollama as ollama_standin
from modelfleet.router.api import ROUTER
from modelfleet.router.app import create_app
from modelfleet.router.config import RouterConfig
from modelfleet.router.core import Router
from modelfleet.router.shared import SharedState

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def ollama() -> Iterator[Callable[..., ollama_standin.RunningStandin]]:
    """Factory: ``ollama(vram_mb=8192, models=["qwen2.5:7b"], num_parallel=2)``."""
    started: list[ollama_standin.RunningStandin] = []

    def start(**kwargs: Any) -> ollama_standin.RunningStandin:
        kwargs.setdefault("load_ms_per_gb", 100.0)
        server = ollama_standin.start_in_thread(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def llama_swap() -> Iterator[Callable[..., swap_standin.RunningStandin]]:
    """Factory: ``llama_swap({"models": {"a": {"cmd": "llama-server -m a.gguf"}}})``."""
    started: list[swap_standin.RunningStandin] = []

    def start(config: dict[str, Any] | str, **kwargs: Any) -> swap_standin.RunningStandin:
        server = swap_standin.start_in_thread(config, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def router_config(backends: list[dict[str, Any]], **overrides: Any) -> RouterConfig:
    """A config with fast timings for tests; ``overrides`` are top-level keys."""
    raw: dict[str, Any] = {
        "admin_token": ADMIN_TOKEN,
        "refresh_interval_s": 0.2,
        "health": {"interval_s": 0.2, "timeout_s": 2.0, "fail_threshold": 2},
        "backends": backends,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return RouterConfig.model_validate(raw)


MakeRouter = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_router(aiohttp_client: Any) -> MakeRouter:
    """``client = await make_router([{"name": ..., "url": ..., "kind": ...}], queue={...})``."""

    async def make(backends: list[dict[str, Any]], **overrides: Any) -> TestClient[Any, Any]:
        app = create_app(router_config(backends, **overrides))
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


async def openai_upstream(
    aiohttp_server: Any, chat: Callable[[web.Request], Awaitable[web.StreamResponse]], model: str
) -> str:
    """A fake OpenAI-only server: ``chat`` answers /v1/chat/completions and /v1/models lists
    ``model``. Returns its base URL, for a backend of kind ``openai``."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": model}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def sse_chat(
    chunks: list[dict[str, Any]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A ``/v1/chat/completions`` handler that streams ``chunks`` as SSE, then ``[DONE]``."""

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for chunk in chunks:
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    return chat


def router_of(client: TestClient[Any, Any]) -> Router:
    assert isinstance(client.server, TestServer)
    return client.server.app[ROUTER]


def shared_of(client: TestClient[Any, Any]) -> SharedState:
    """The replica's shared state (Redis), which this test's router must have."""
    shared = router_of(client).shared
    assert shared is not None
    return shared


def admin(client: TestClient[Any, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def ndjson(resp: Any) -> list[dict[str, Any]]:
    text = await resp.text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def sse(resp: Any) -> list[Any]:
    events = []
    for line in (await resp.text()).splitlines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate()`` holds (the router and stand-ins work in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# a 500 that one request's content sets off, in no list the router knows (the refusals it
# knows, such as llama-server's "tools param requires --jinja flag", are 400s: see
# test_backend_refusals.py): only the error-rate rule keeps it from ejecting the backend
POISON_MESSAGE = "this request's content breaks the backend"


@dataclass
class FaultyBackend:
    """An OpenAI-shaped backend that fails on purpose.

    ``mode``: ok | 500 | 502 (a gateway's HTML page) | stall (first chunk, then silence) |
    hang (accepts, never answers) | cut (first chunk, then drops the connection) | flood
    (streams without end, for clients that stop reading). In every mode a request whose body
    contains ``poison`` gets a 500 for content it cannot handle, and ``delay_s``
    holds each answer that long after its first chunk (so concurrent requests overlap).
    """

    mode: str = "ok"
    models: list[str] = field(default_factory=lambda: ["m"])
    requests: int = 0
    cancelled: int = 0
    health_status: int = 200
    poison: str | None = None
    delay_s: float = 0.0
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        raw = await request.read()
        body = json.loads(raw)
        if self.poison and self.poison in raw.decode():
            error = {"code": 500, "message": POISON_MESSAGE, "type": "server_error"}
            return web.json_response({"error": error}, status=500)
        if self.mode == "500":
            return web.json_response({"error": {"message": "boom", "code": 500}}, status=500)
        if self.mode == "502":
            page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(text=page, status=502, content_type="text/html")
        if self.mode == "hang":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}}], "model": body["model"]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.abort()
            return resp
        if self.mode == "flood":
            line = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            try:
                while True:
                    await resp.write(line * 256)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            except ConnectionError:
                self.cancelled += 1
                return resp
        if self.mode == "stall":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def models_list(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model"} for m in self.models]
        return web.json_response({"object": "list", "data": data}, status=self.health_status)


@pytest.fixture
async def faulty_backend() -> AsyncIterator[Callable[..., Awaitable[FaultyBackend]]]:
    servers: list[TestServer] = []

    async def start(
        mode: str = "ok", models: list[str] | None = None, **kwargs: Any
    ) -> FaultyBackend:
        backend = FaultyBackend(mode=mode, models=models or ["m"], **kwargs)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", backend.chat)
        app.router.add_get("/v1/models", backend.models_list)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        backend.server = server
        servers.append(server)
        return backend

    yield start
    for server in servers:
        await server.close()
