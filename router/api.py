"""Front APIs: OpenAI ``/v1/...`` and Ollama ``/api/...``, fleet-wide where that makes sense."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from modelfleet.router import translate
from modelfleet.router.backends import MIB, BackendError
from modelfleet.router.core import Router
from modelfleet.router.proxy import (
    BACKEND_HEADER,
    REASON_HEADER,
    Call,
    Front,
    error_response,
    parse_duration,
    proxy,
)
from modelfleet.router.scheduler import RoutingError
from modelfleet.router.state import BackendState

ROUTER = web.AppKey("router", Router)
OLLAMA_API_VERSION = "0.12.6"  # the Ollama API level the router's /api front speaks


def router_of(request: web.Request) -> Router:
    return request.app[ROUTER]


def request_id(request: web.Request) -> str:
    return request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]


class BadRequest(Exception):
    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise BadRequest(400, "request body is empty; expected a JSON object", "bad-json")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}", "bad-json") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object", "bad-json")
    return body


def resolve_model(router: Router, body: dict[str, Any], front: Front) -> str:
    name = body.get("model") or (body.get("name") if front == "ollama" else None)
    if not name or not isinstance(name, str):
        raise BadRequest(400, "missing field 'model' in the request body", "missing-model")
    model = router.fleet.resolve(name)
    if model is None:
        hint = ", try pulling it first" if front == "ollama" else ""
        raise BadRequest(404, f"model {name!r} not found on any backend{hint}", "unknown-model")
    return model


async def _model_call(request: web.Request, front: Front, endpoint: str) -> web.StreamResponse:
    router = router_of(request)
    try:
        body = await read_body(request)
        model = resolve_model(router, body, front)
    except BadRequest as exc:
        return error_response(front, exc.status, str(exc), exc.reason)
    stream_default = front == "ollama" and endpoint in ("chat", "generate")
    stream = body.get("stream", stream_default) is not False if endpoint != "embed" else False
    call = Call(front, request.path, endpoint, body, model, bool(stream), request_id(request))
    if front == "ollama" and endpoint in ("chat", "generate") and _is_load_only(body, endpoint):
        return await _load_or_unload(router, call)
    return await proxy(router, request, call)


# -- OpenAI front ---------------------------------------------------------------------------


async def openai_chat(request: web.Request) -> web.StreamResponse:
    return await _model_call(request, "openai", "openai")


def _openai_model(router: Router, model: str) -> dict[str, Any]:
    return {
        "id": model,
        "object": "model",
        "created": int(router.started),
        "owned_by": "modelfleet",
        "backends": [s.name for s in router.fleet.backends.values() if model in s.catalog()],
        "loaded_on": [s.name for s, _ in _holders(router, model)],
    }


async def openai_models(request: web.Request) -> web.Response:
    router = router_of(request)
    data = [_openai_model(router, m) for m in sorted(router.fleet.known_models())]
    return web.json_response({"object": "list", "data": data})


async def openai_model(request: web.Request) -> web.Response:
    router = router_of(request)
    name = request.match_info["model"]
    model = router.fleet.resolve(name)
    if model is None:
        return error_response("openai", 404, f"model {name!r} not found", "unknown-model")
    return web.json_response(_openai_model(router, model))


# -- Ollama front ---------------------------------------------------------------------------


async def ollama_root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def ollama_version(request: web.Request) -> web.Response:
    return web.json_response({"version": OLLAMA_API_VERSION})


async def ollama_chat(request: web.Request) -> web.StreamResponse:
    return await _model_call(request, "ollama", "chat")


async def ollama_generate(request: web.Request) -> web.StreamResponse:
    return await _model_call(request, "ollama", "generate")


async def ollama_embed(request: web.Request) -> web.StreamResponse:
    return await _model_call(request, "ollama", "embed")


async def ollama_embeddings(request: web.Request) -> web.StreamResponse:
    return await _model_call(request, "ollama", "embeddings")


def _details(router: Router, model: str) -> dict[str, Any]:
    for state in router.fleet.backends.values():
        ms = state.models.get(model)
        if ms and ms.details.get("details"):
            return dict(ms.details["details"])
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }


def _iso(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def ollama_tags(request: web.Request) -> web.Response:
    router = router_of(request)
    models = []
    for model in sorted(router.fleet.known_models()):
        holders = [s for s in router.fleet.backends.values() if model in s.catalog()]
        digest, modified, size = "", _iso(router.started), 0
        for state in holders:
            ms = state.models.get(model)
            if ms:
                digest = ms.details.get("digest", digest)
                modified = ms.details.get("modified_at", modified)
                size = max(size, ms.size_mb * MIB)
        models.append(
            {
                "name": model,
                "model": model,
                "modified_at": modified,
                "size": size,
                "digest": digest,
                "details": _details(router, model),
                "backends": [s.name for s in holders],
            }
        )
    return web.json_response({"models": models})


def _holders(router: Router, model: str) -> list[tuple[BackendState, Any]]:
    return [
        (s, s.models[model])
        for s in router.fleet.backends.values()
        if model in s.models and s.models[model].status != "cold"
    ]


async def ollama_ps(request: web.Request) -> web.Response:
    """Fleet-wide ``/api/ps``: one entry per (backend, model), with where and how busy."""
    router = router_of(request)
    now_wall, now = time.time(), time.monotonic()
    entries = []
    for state in router.fleet.backends.values():
        for ms in state.models.values():
            if ms.status == "cold":
                continue
            expires = ms.expires_at
            if expires is None and ms.unload_at is not None:
                expires = now_wall + (ms.unload_at - now)
            entries.append(
                {
                    "name": ms.model,
                    "model": ms.model,
                    "size": ms.size_mb * MIB,
                    "digest": ms.details.get("digest", ""),
                    "details": _details(router, ms.model),
                    "expires_at": _iso(expires),
                    "size_vram": (ms.size_mb if ms.vram_mb is None else ms.vram_mb) * MIB,
                    "context_length": ms.context_length or 0,
                    "backend": state.name,
                    "host": state.host,
                    "status": ms.status,
                    "in_flight": ms.in_flight,
                    "slots": ms.slots,
                    "_expires": expires or float("inf"),
                }
            )
    entries.sort(key=lambda e: e.pop("_expires"), reverse=True)
    return web.json_response({"models": entries})


async def ollama_show(request: web.Request) -> web.Response:
    router = router_of(request)
    try:
        body = await read_body(request)
        model = resolve_model(router, body, "ollama")
    except BadRequest as exc:
        return error_response("ollama", exc.status, str(exc), exc.reason)
    holders = [s for s in router.fleet.backends.values() if model in s.catalog() and s.healthy]
    for state in holders:
        if state.kind != "ollama":
            continue
        adapter = router.adapter(state)
        try:
            async with router.http().post(
                adapter.base + "/api/show",
                json={**body, "model": state.upstream_name(model)},
                headers=adapter.headers(),
                timeout=aiohttp.ClientTimeout(total=router.config.health.timeout_s * 3),
            ) as resp:
                if resp.status == 200:
                    return web.json_response(
                        await resp.json(content_type=None),
                        headers={BACKEND_HEADER: state.name, REASON_HEADER: "show"},
                    )
        except (aiohttp.ClientError, TimeoutError, ValueError):
            continue
    ctx = 0
    for state in holders:
        entry = state.entry(model)
        ms = state.models.get(model)
        ctx = max(
            ctx, (entry.ctx if entry and entry.ctx else 0), (ms.context_length or 0) if ms else 0
        )
    details = _details(router, model)
    arch = details.get("family") or "llama"
    return web.json_response(
        {
            "modelfile": f"# served by modelfleet from {', '.join(s.name for s in holders)}\n",
            "parameters": "",
            "template": "",
            "details": details,
            "model_info": {"general.architecture": arch, f"{arch}.context_length": ctx},
            "capabilities": ["completion"],
            "modified_at": _iso(router.started),
        }
    )


async def ollama_pull(request: web.Request) -> web.StreamResponse:
    """Pull on one named backend (``"backend": "gpu-01"``) or on every Ollama backend."""
    router = router_of(request)
    try:
        body = await read_body(request)
    except BadRequest as exc:
        return error_response("ollama", exc.status, str(exc), exc.reason)
    model = body.get("model") or body.get("name")
    if not model or not isinstance(model, str):
        return error_response("ollama", 400, "missing field 'model' in the request body", "bad")
    target = body.pop("backend", None) or request.query.get("backend") or "all"
    if target == "all":
        targets = [s for s in router.fleet.backends.values() if s.kind == "ollama" and s.healthy]
    elif target in router.fleet.backends:
        targets = [router.fleet.backends[target]]
    else:
        return error_response("ollama", 404, f"backend {target!r} is not configured", "bad")
    if not targets:
        return error_response("ollama", 503, "no healthy Ollama backend to pull on", "no-backend")
    unsupported = [s.name for s in targets if s.kind != "ollama"]
    if unsupported:
        message = (
            f"backend {unsupported[0]!r} cannot pull models through the API; "
            "its models come from the deploy"
        )
        return error_response("ollama", 400, message, "bad")
    stream = body.get("stream", True) is not False
    out = web.StreamResponse(
        headers={BACKEND_HEADER: ",".join(s.name for s in targets), REASON_HEADER: "pull"}
    )
    out.content_type = "application/x-ndjson" if stream else "application/json"
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    failed: list[str] = []

    async def pull_one(state: BackendState) -> None:
        adapter = router.adapter(state)
        try:
            async with router.http().post(
                adapter.base + "/api/pull",
                json={**body, "model": model, "stream": True},
                headers=adapter.headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=router.config.stall_timeout_s),
            ) as resp:
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *done, buffer = buffer.split(b"\n")
                    for line in done:
                        if line.strip():
                            obj = json.loads(line)
                            if "error" in obj:
                                failed.append(state.name)
                            await lines.put({**obj, "backend": state.name})
                if resp.status >= 400 and state.name not in failed:
                    failed.append(state.name)
                    await lines.put({"error": f"HTTP {resp.status}", "backend": state.name})
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            failed.append(state.name)
            await lines.put({"error": f"{type(exc).__name__}: {exc}", "backend": state.name})
        await router.refresh(state)

    async def run_all() -> None:
        await asyncio.gather(*(pull_one(s) for s in targets))
        await lines.put(None)

    task = asyncio.ensure_future(run_all())
    try:
        await out.prepare(request)
        while (item := await lines.get()) is not None:
            if stream:
                await out.write(json.dumps(item).encode() + b"\n")
        if failed:
            final: dict[str, Any] = {"error": f"pull of {model} failed on {', '.join(failed)}"}
        else:
            final = {"status": "success", "backends": [s.name for s in targets]}
        await out.write(json.dumps(final).encode() + b"\n")
        await out.write_eof()
        return out
    finally:
        task.cancel()


# -- load-only and unload-only requests (empty prompt) --------------------------------------


def _is_load_only(body: dict[str, Any], endpoint: str) -> bool:
    if endpoint == "chat":
        return not body.get("messages")
    return not body.get("prompt") and not body.get("images")


async def _load_or_unload(router: Router, call: Call) -> web.Response:
    """Ollama semantics, fleet-wide: ``keep_alive: 0`` unloads everywhere, else load once."""
    done: dict[str, Any] = {"model": call.body.get("model"), "created_at": translate.now_rfc3339()}
    if call.endpoint == "chat":
        done["message"] = {"role": "assistant", "content": ""}
    else:
        done["response"] = ""
    keep_alive = parse_duration(call.body.get("keep_alive"))
    if keep_alive == 0:
        holders = _holders(router, call.model)
        for _, ms in holders:
            ms.status = "cold"  # first, so nothing new is routed there meanwhile
        await asyncio.gather(*(router.unload(s.name, call.model) for s, _ in holders))
        names = ",".join(s.name for s, _ in holders) or "none"
        return web.json_response(
            {**done, "done": True, "done_reason": "unload"},
            headers={BACKEND_HEADER: names, REASON_HEADER: "unload"},
        )
    try:
        lease = await router.scheduler.acquire(call.model)
    except RoutingError as exc:
        return error_response("ollama", exc.status, str(exc), "no-backend", exc.retry_after)
    start = time.monotonic()
    record = {"kind": "load", "request_id": call.request_id, "api": "ollama", "path": call.path}
    record |= {"model": call.model, "backend": lease.backend.name, "reason": lease.reason}
    ok = False
    try:
        if lease.ready is not None:
            await lease.ready
        # Ollama: always ask, so a keep_alive given with a resident model still applies
        if lease.backend.kind == "ollama" or lease.backend.model(call.model).status != "loaded":
            await router.adapter(lease.backend).load(call.model, call.body.get("keep_alive"))
            router.scheduler.first_byte(lease)
        ok = True
    except (BackendError, aiohttp.ClientError, TimeoutError) as exc:
        router.record_failure(lease.backend, "load")
        router.access_log.write({**record, "status": 502, "error": f"load failed: {exc}"})
        return error_response(
            "ollama", 502, f"load failed: {exc}", "load-failed", backend=lease.backend.name
        )
    finally:
        router.scheduler.release(lease, ok=ok, served=False)
    router.access_log.write({**record, "status": 200, "loaded": True, "error": None})
    if keep_alive is not None and lease.backend.kind != "ollama":
        ms = lease.backend.model(call.model)
        ms.pinned = keep_alive < 0
        ms.unload_at = None if keep_alive < 0 else time.monotonic() + keep_alive
    elapsed = int((time.monotonic() - start) * 1e9)
    return web.json_response(
        {
            **done,
            "done": True,
            "done_reason": "load",
            "total_duration": elapsed,
            "load_duration": elapsed,
        },
        headers={BACKEND_HEADER: lease.backend.name, REASON_HEADER: lease.reason},
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.post("/v1/chat/completions", openai_chat),
            web.post("/v1/completions", openai_chat),
            web.post("/v1/embeddings", openai_chat),
            web.get("/v1/models", openai_models),
            web.get("/v1/models/{model:.+}", openai_model),
            web.get("/", ollama_root),  # GET also answers HEAD
            web.get("/api/version", ollama_version),
            web.get("/api/tags", ollama_tags),
            web.get("/api/ps", ollama_ps),
            web.post("/api/show", ollama_show),
            web.post("/api/pull", ollama_pull),
            web.post("/api/chat", ollama_chat),
            web.post("/api/generate", ollama_generate),
            web.post("/api/embed", ollama_embed),
            web.post("/api/embeddings", ollama_embeddings),
        ]
    )
