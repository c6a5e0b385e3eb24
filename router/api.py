"""Front APIs: OpenAI ``/v1/...`` and Ollama ``/api/...``, fleet-wide where that makes sense."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from modelfleet.router import schemas, translate
from modelfleet.router.backends import MIB, BackendError, ollama_details
from modelfleet.router.core import Router
from modelfleet.router.health import (
    backend_at_fault,
    note_outcome,
    request_key,
    transport_failure,
)
from modelfleet.router.proxy import (
    BACKEND_HEADER,
    BUSY,
    GATEWAY,
    REASON_HEADER,
    Call,
    Front,
    error_response,
    parse_duration,
    proxy,
    retry_after_no_backend,
    retry_after_queue,
)
from modelfleet.router.scheduler import NoBackend, QueueTimeout, RoutingError
from modelfleet.router.state import BackendState

ROUTER = web.AppKey("router", Router)
IS_ADMIN = web.RequestKey("admin", bool)  # set by the auth middleware (router/app.py)
OLLAMA_API_VERSION = "0.12.6"  # the Ollama API level the router's /api front speaks
FOREVER_S = (2**63 - 1) / 1e9  # Ollama's expiry for keep_alive -1: Go's longest duration


def router_of(request: web.Request) -> Router:
    return request.app[ROUTER]


def request_id(request: web.Request) -> str:
    return request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]


class BadRequest(Exception):
    def __init__(self, status: int, message: str, reason: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.close = close  # the rest of the body is unreadable: the connection cannot be reused

    def response(self, front: Front) -> web.Response:
        answer = error_response(front, self.status, str(self), self.reason)
        if self.close:
            answer.force_close()
        return answer


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object a client sent, checked against its endpoint's shape (router/schemas.py)."""
    try:
        raw = await request.read()
    except (RequestPayloadError, HttpProcessingError) as exc:
        # e.g. Content-Encoding: gzip on a body that is not gzip. The rest of the body is
        # unreadable: mark it finished so aiohttp does not try to drain it (and log a
        # traceback); the answer closes the connection.
        request.content.feed_eof()
        detail = " ".join(str(exc).split()).removeprefix("400, message: ")
        message = f"request body cannot be decoded: {detail}"
        raise BadRequest(400, message, "bad-body", close=True) from None
    if not raw.strip():
        raise BadRequest(400, "request body is empty; expected a JSON object", "bad-json")
    try:
        body = orjson.loads(raw)  # the fast path; anything it refuses gets json's verdict below
    except orjson.JSONDecodeError:
        body = _stdlib_json(raw)
    if not isinstance(body, dict):
        raise BadRequest(400, "request body must be a JSON object", "bad-json")
    deep = schemas.too_deep(body)
    if deep:
        message = f"{deep}: nested deeper than {schemas.MAX_DEPTH} levels"
        raise BadRequest(400, message, "bad-json")
    try:
        schemas.check(request.path, body)
    except schemas.ShapeError as exc:
        raise BadRequest(400, str(exc), "bad-request") from None
    return body


def _stdlib_json(raw: bytes) -> Any:
    """``json.loads``, with its errors as the client's 400s (clearer messages than orjson's;
    and what json accepts, such as NaN, is accepted)."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest(400, "request body is not UTF-8 JSON", "bad-json") from None
    except RecursionError:
        message = f"request body is nested too deeply (limit {schemas.MAX_DEPTH} levels)"
        raise BadRequest(400, message, "bad-json") from None
    except ValueError as exc:
        raise BadRequest(400, f"request body is not valid JSON: {exc}", "bad-json") from None


def is_admin(request: web.Request) -> bool:
    """The caller sent the admin token (set by the auth middleware)."""
    return request.get(IS_ADMIN, False)


def may_manage(request: web.Request) -> bool:
    """Pull, delete, copy, create, push, unload, pin: the admin's, unless config grants it."""
    return is_admin(request) or router_of(request).config.management.clients_may_manage


def management_denied(front: Front, what: str) -> web.Response:
    message = (
        f"{what} changes models for the whole fleet and needs the admin token "
        "('Authorization: Bearer <admin token>'; management.clients_may_manage is off)"
    )
    return error_response(front, 403, message, "admin-only")


def client_keep_alive(request: web.Request, body: dict[str, Any]) -> float | None:
    """A client's ``keep_alive`` in seconds, clamped to the configured range unless admin.

    Raises ``BadRequest`` for a value that is not a duration (Ollama answers 400 too).
    """
    if "keep_alive" not in body or body["keep_alive"] is None:
        return None
    seconds = parse_duration(body["keep_alive"])
    if seconds is None:
        raise BadRequest(
            400,
            f"keep_alive: expected a duration ('5m', '1h30m') or seconds, got "
            f"{json.dumps(body['keep_alive'])[:40]}",
            "bad-request",
        )
    if may_manage(request):
        return seconds
    bounds = router_of(request).config.management
    if seconds < 0:
        return bounds.keep_alive_max_s  # "forever" is a pin: the longest a client may ask
    return min(max(seconds, bounds.keep_alive_min_s), bounds.keep_alive_max_s)


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
        keep_alive = client_keep_alive(request, body) if front == "ollama" else None
    except BadRequest as exc:
        return exc.response(front)
    stream_default = front == "ollama" and endpoint in ("chat", "generate")
    stream = body.get("stream", stream_default) is not False if endpoint != "embed" else False
    load_only = front == "ollama" and _is_load_only(body, endpoint)
    if load_only and keep_alive is not None and not may_manage(request):
        asked = parse_duration(body["keep_alive"])
        if asked is not None and asked <= 0:
            what = "unloading a model (keep_alive 0)" if asked == 0 else "pinning a model"
            return management_denied(front, what)
    if keep_alive is not None:
        body = {**body, "keep_alive": int(keep_alive) if keep_alive.is_integer() else keep_alive}
    call = Call(front, request.path, endpoint, body, model, bool(stream), request_id(request))
    if load_only:
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
        "backends": [s.name for s in router.fleet.backends_with(model)],
        "loaded_on": [s.name for s, _ in _holders(router, router.fleet.resolve(model) or model)],
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


async def openai_responses(request: web.Request) -> web.StreamResponse:
    """OpenAI Responses API (stateless: ``previous_response_id`` is the backend's business)."""
    return await _model_call(request, "openai", "responses")


# -- Anthropic front ------------------------------------------------------------------------


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    """Anthropic Messages API (``/v1/messages`` and ``/v1/messages/count_tokens``)."""
    return await _model_call(request, "anthropic", "messages")


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
    return ollama_details({})


def _iso(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def ollama_tags(request: web.Request) -> web.Response:
    router = router_of(request)
    models = []
    for model in sorted(router.fleet.known_models()):
        holders = router.fleet.backends_with(model)
        named = router.fleet.resolve(model) or model  # an alias lists its model's facts
        digest, modified, size = "", _iso(router.started), 0
        for state in holders:
            ms = state.models.get(named)
            if ms:
                digest = ms.details.get("digest", digest)
                modified = ms.details.get("modified_at", modified)
                # Ollama's /api/tags size is the model file's; the VRAM it takes is /api/ps's
                size = max(size, ms.details.get("size") or ms.size_mb * MIB)
        models.append(
            {
                "name": model,
                "model": model,
                "modified_at": modified,
                "size": size,
                "digest": digest,
                "details": _details(router, named),
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
            if expires is None and state.kind != "ollama":
                expires = now_wall + FOREVER_S  # no idle unload there: what Ollama says for -1
            entry = state.entry(ms.model)
            entries.append(
                {
                    "name": ms.model,
                    "model": ms.model,
                    "size": ms.size_mb * MIB,
                    "digest": ms.details.get("digest", ""),
                    "details": _details(router, ms.model),
                    "expires_at": _iso(expires),
                    "size_vram": (ms.size_mb if ms.vram_mb is None else ms.vram_mb) * MIB,
                    "context_length": ms.context_length or (entry.ctx if entry else None) or 0,
                    "backend": state.name,
                    "host": state.host,
                    "status": ms.status,
                    "in_flight": ms.in_flight,
                    "slots": ms.slots,
                    "_expires": float("inf") if expires is None else expires,
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
        return exc.response("ollama")
    holders = [s for s in router.fleet.backends_with(model) if s.healthy]
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
    return await _show_from_llama_cpp(router, model, holders)


async def _show_from_llama_cpp(
    router: Router, model: str, holders: list[BackendState]
) -> web.Response:
    """``/api/show`` for llama-server / llama-swap models: what the backend reports
    (``/props``, ``/v1/models`` meta), else the catalog's ``ctx``."""
    facts, source = None, None
    for state in holders:
        if state.kind not in ("llama-server", "llama-swap"):
            continue
        try:
            async with asyncio.timeout(router.config.health.timeout_s * 3):
                facts = await router.adapter(state).describe(model)
        except (BackendError, aiohttp.ClientError, TimeoutError, ValueError):
            facts = None
        if facts is not None:
            source = state.name
            break
    ctx = facts.context_length if facts else None
    for state in holders:
        entry = state.entry(model)
        ms = state.models.get(model)
        ctx = ctx or (ms.context_length if ms else None) or (entry.ctx if entry else None)
    details = _details(router, model)
    # clients look the context length up under model_info["<architecture>.context_length"];
    # llama.cpp does not report the architecture, so the key is llama's (as llama-swap's
    # Ollama API writes it) and details.family stays empty
    arch = details.get("family") or "llama"
    info: dict[str, Any] = {"general.architecture": arch, f"{arch}.context_length": ctx or 0}
    info |= facts.model_info if facts else {}
    headers = {BACKEND_HEADER: source or "router", REASON_HEADER: "show"}
    return web.json_response(
        {
            "modelfile": f"# served by modelfleet from {', '.join(s.name for s in holders)}\n",
            "parameters": f"num_ctx {ctx}" if ctx else "",
            "template": facts.template if facts else "",
            "details": details,
            "model_info": info,
            "capabilities": facts.capabilities if facts else ["completion"],
            "modified_at": _iso(router.started),
        },
        headers=headers,
    )


# -- model management (admin by default) ---------------------------------------------------

# what a client key may send on a management call when management.clients_may_manage is on;
# anything else (``insecure``, unknown fields) is forwarded only with the admin token
CLIENT_FIELDS = {
    "pull": {"model", "name", "stream"},
    "push": {"model", "name", "stream"},
    "create": {"model", "name", "stream", "from", "files", "adapters", "template", "license"}
    | {"system", "parameters", "messages", "quantize"},
    "delete": {"model", "name"},
    "copy": {"source", "destination"},
}
STREAMING = {"pull", "push", "create"}


async def ollama_pull(request: web.Request) -> web.StreamResponse:
    """Pull on one named backend (``"backend": "gpu-01"``) or on every Ollama backend."""
    return await _manage(request, "pull")


async def ollama_push(request: web.Request) -> web.StreamResponse:
    return await _manage(request, "push")


async def ollama_create(request: web.Request) -> web.StreamResponse:
    return await _manage(request, "create")


async def ollama_delete(request: web.Request) -> web.StreamResponse:
    return await _manage(request, "delete")


async def ollama_copy(request: web.Request) -> web.StreamResponse:
    return await _manage(request, "copy")


async def _manage(request: web.Request, action: str) -> web.StreamResponse:
    """One management call, fanned out to the Ollama backends it targets."""
    router = router_of(request)
    if not may_manage(request):
        return management_denied("ollama", f"/api/{action}")
    try:
        body = await read_body(request)
    except BadRequest as exc:
        return exc.response("ollama")
    subject = body.get("source") if action == "copy" else body.get("model") or body.get("name")
    if not subject or not isinstance(subject, str):
        field = "source" if action == "copy" else "model"
        return error_response("ollama", 400, f"missing field {field!r} in the request body", "bad")
    target = body.pop("backend", None) or request.query.get("backend") or "all"
    if target == "all":
        targets = _fleet_targets(router, action, subject, body)
        source = body.get("from") if action == "create" else subject
        if not targets and action != "pull" and isinstance(source, str):
            message = f"model {source!r} not found on any healthy Ollama backend"
            return error_response("ollama", 404, message, "unknown-model")
    elif target in router.fleet.backends:
        targets = [router.fleet.backends[target]]
    else:
        return error_response("ollama", 404, f"backend {target!r} is not configured", "bad")
    if not targets:
        message = f"no healthy Ollama backend to {action} on"
        return error_response(
            "ollama", 503, message, "no-backend", retry_after_no_backend(router, None)
        )
    unsupported = [s.name for s in targets if s.kind != "ollama"]
    if unsupported:
        message = (
            f"backend {unsupported[0]!r} cannot {action} models through the API; "
            "its models come from the deploy"
        )
        return error_response("ollama", 400, message, "bad")
    if not is_admin(request):
        body = {k: v for k, v in body.items() if k in CLIENT_FIELDS[action]}
    if action == "pull" or action == "push":
        body["model"] = subject
    method, path = ("DELETE", "/api/delete") if action == "delete" else ("POST", f"/api/{action}")
    if action in STREAMING:
        return await _fan_out_stream(request, router, targets, path, body, subject, action)
    return await _fan_out(router, targets, method, path, body, subject, action)


def _fleet_targets(
    router: Router, action: str, subject: str, body: dict[str, Any]
) -> list[BackendState]:
    """Where a management call with no ``backend`` goes: fleet semantics.

    pull: the Ollama backends the catalog places the model on (every one when none does);
    delete, copy, push: those that hold the model; create: those that hold its ``from``
    model (every one when it is built from files).
    """
    ollama = [s for s in router.fleet.backends.values() if s.kind == "ollama" and s.healthy]
    if action == "pull":
        placed = [
            s
            for s in ollama
            if any(subject == e.name or subject in e.aliases for e in s.config.models)
        ]
        return placed or ollama
    source = body.get("from") if action == "create" else subject
    if action == "create" and not isinstance(source, str):
        return ollama
    return [s for s in ollama if source in s.catalog()]


async def _fan_out(
    router: Router,
    targets: list[BackendState],
    method: str,
    path: str,
    body: dict[str, Any],
    subject: str,
    action: str,
) -> web.Response:
    """delete / copy: one answer per backend, folded into one."""

    async def one(state: BackendState) -> tuple[str, int, str]:
        adapter = router.adapter(state)
        try:
            async with router.http().request(
                method,
                adapter.base + path,
                json=body,
                headers=adapter.headers(),
                timeout=aiohttp.ClientTimeout(total=router.config.health.timeout_s * 3),
            ) as resp:
                text = translate.openai_error_message(await resp.read())
                return state.name, resp.status, text
        except (aiohttp.ClientError, TimeoutError) as exc:
            return state.name, 502, f"{type(exc).__name__}: {exc}"
        finally:
            await router.refresh(state)

    results = await asyncio.gather(*(one(s) for s in targets))
    failed = [(name, status, text) for name, status, text in results if status >= 400]
    names = ",".join(s.name for s in targets)
    headers = {BACKEND_HEADER: names, REASON_HEADER: action}
    if not failed:
        answer = {"status": "success", "backends": names.split(",")}
        return web.json_response(answer, headers=headers)
    status = min(status for _, status, _ in failed)
    status = status if status < 500 else 502
    detail = "; ".join(f"{name}: {text}" for name, _, text in failed)
    return error_response("ollama", status, f"{action} of {subject} failed on {detail}", action)


async def _fan_out_stream(
    request: web.Request,
    router: Router,
    targets: list[BackendState],
    path: str,
    body: dict[str, Any],
    subject: str,
    action: str,
) -> web.StreamResponse:
    """pull / push / create: progress lines from every backend, each tagged with its name."""
    stream = body.get("stream", True) is not False
    out = web.StreamResponse(
        headers={BACKEND_HEADER: ",".join(s.name for s in targets), REASON_HEADER: action}
    )
    out.content_type = "application/x-ndjson" if stream else "application/json"
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    failed: list[str] = []

    async def one(state: BackendState) -> None:
        adapter = router.adapter(state)
        try:
            async with router.http().post(
                adapter.base + path,
                json={**body, "stream": True},
                headers=adapter.headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=router.config.stall_timeout_s),
            ) as resp:
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *done, buffer = buffer.split(b"\n")
                    for line in done:
                        obj = _json_line(line) if line.strip() else None
                        if obj is None:
                            continue
                        if "error" in obj:
                            failed.append(state.name)
                        await lines.put({**obj, "backend": state.name})
                if resp.status >= 400 and state.name not in failed:
                    failed.append(state.name)
                    message = translate.openai_error_message(buffer) if buffer else ""
                    error = f"HTTP {resp.status}" + (f": {message}" if message else "")
                    await lines.put({"error": error, "backend": state.name})
        except (aiohttp.ClientError, TimeoutError) as exc:
            failed.append(state.name)
            await lines.put({"error": f"{type(exc).__name__}: {exc}", "backend": state.name})
        await router.refresh(state)

    async def run_all() -> None:
        await asyncio.gather(*(one(s) for s in targets))
        await lines.put(None)

    task = asyncio.ensure_future(run_all())
    try:
        await out.prepare(request)
        while (item := await lines.get()) is not None:
            if stream:
                await out.write(json.dumps(item).encode() + b"\n")
        if failed:
            error = f"{action} of {subject} failed on {', '.join(failed)}"
            final: dict[str, Any] = {"error": error}
        else:
            final = {"status": "success", "backends": [s.name for s in targets]}
        await out.write(json.dumps(final).encode() + b"\n")
        await out.write_eof()
        return out
    finally:
        task.cancel()


def _json_line(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


# -- load-only and unload-only requests (empty prompt) --------------------------------------


def _is_load_only(body: dict[str, Any], endpoint: str) -> bool:
    """An Ollama request with nothing to answer: Ollama loads the model (or unloads it)."""
    if endpoint == "chat":
        return not body.get("messages")
    if endpoint == "generate":
        return not body.get("prompt") and not body.get("images")
    if endpoint == "embed":
        return not body.get("input")  # missing, null, "" or []
    return endpoint == "embeddings" and not body.get("prompt")


def _empty_answer(call: Call, reason: str) -> dict[str, Any]:
    """What Ollama answers to a load-only (or unload) request on this endpoint."""
    model = call.body.get("model")
    if call.endpoint == "embed":
        return {"model": model, "embeddings": []}
    if call.endpoint == "embeddings":
        return {"embedding": []}
    done: dict[str, Any] = {"model": model, "created_at": translate.now_rfc3339()}
    if call.endpoint == "chat":
        done["message"] = {"role": "assistant", "content": ""}
    else:
        done["response"] = ""
    return {**done, "done": True, "done_reason": reason}


async def _load_or_unload(router: Router, call: Call) -> web.Response:
    """Ollama semantics, fleet-wide: ``keep_alive: 0`` unloads everywhere, else load once."""
    keep_alive = parse_duration(call.body.get("keep_alive"))
    if keep_alive == 0:
        holders = _holders(router, call.model)
        now = time.monotonic()
        for state, _ in holders:  # first, so nothing new is routed there meanwhile
            router.scheduler.books.unloaded(state, call.model, now)
        await asyncio.gather(*(router.unload(s.name, call.model) for s, _ in holders))
        names = ",".join(s.name for s, _ in holders) or "none"
        return web.json_response(
            _empty_answer(call, "unload"),
            headers={BACKEND_HEADER: names, REASON_HEADER: "unload"},
        )
    try:
        lease = await router.scheduler.acquire(call.model)
    except NoBackend as exc:
        retry_after = retry_after_no_backend(router, call.model)
        return error_response("ollama", exc.status, str(exc), "no-backend", retry_after)
    except RoutingError as exc:  # queue full or deadline: from observed service times
        retry_after = retry_after_queue(router, call.model)
        reason = "queue-deadline" if isinstance(exc, QueueTimeout) else "queue-full"
        return error_response("ollama", exc.status, str(exc), reason, retry_after)
    start = time.monotonic()
    record = {"kind": "load", "request_id": call.request_id, "api": "ollama", "path": call.path}
    record |= {"model": call.model, "backend": lease.backend.name, "reason": lease.reason}
    ok = False
    try:
        if lease.ready is not None:
            await lease.ready  # may move it onto another replica's load (router/scheduler.py)
            record |= {"backend": lease.backend.name, "reason": lease.reason}
        # Ollama: always ask, so a keep_alive given with a resident model still applies
        if lease.backend.kind == "ollama" or lease.backend.model(call.model).status != "loaded":
            embedding = call.endpoint in ("embed", "embeddings")
            await router.adapter(lease.backend).load(
                call.model, call.body.get("keep_alive"), for_embedding=embedding
            )
            router.scheduler.first_byte(lease)
        ok = True
    except BackendError as exc:
        if exc.status is None:  # the router cannot load there (not the backend's fault)
            router.access_log.write({**record, "status": 502, "error": str(exc)})
            return error_response("ollama", 502, str(exc), "backend-failed")
        if exc.status in BUSY or exc.status in GATEWAY:
            return _load_failed(router, lease.backend, record, str(exc))
        # the backend answered this request with an error (an embedding model asked to
        # generate ...): the request's fault, handed back with the backend's message
        ok = True  # the slot was used normally
        if backend_at_fault(exc.status):
            note_outcome(router, lease.backend, bad=True, key=request_key(call.body))
        router.access_log.write({**record, "status": exc.status, "error": exc.detail})
        return error_response(
            "ollama", exc.status, exc.detail, "backend-error", backend=lease.backend.name
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _load_failed(router, lease.backend, record, detail)
    finally:
        router.scheduler.release(lease, ok=ok, served=False)
    router.access_log.write({**record, "status": 200, "loaded": True, "error": None})
    if keep_alive is not None and lease.backend.kind != "ollama":
        ms = lease.backend.model(call.model)
        router.set_pinned(lease.backend, call.model, keep_alive < 0)
        ms.unload_at = None if keep_alive < 0 else time.monotonic() + keep_alive
    answer = _empty_answer(call, "load")
    if "done" in answer:  # Ollama's embed answers leave the durations out here
        elapsed = int((time.monotonic() - start) * 1e9)
        answer |= {"total_duration": elapsed, "load_duration": elapsed}
    return web.json_response(
        answer, headers={BACKEND_HEADER: lease.backend.name, REASON_HEADER: lease.reason}
    )


def _load_failed(
    router: Router, backend: BackendState, record: dict[str, Any], detail: str
) -> web.Response:
    """A load that failed for the backend's own reasons: counts against it, 502 to the client."""
    transport_failure(router, backend, "load")
    router.access_log.write({**record, "status": 502, "error": f"load failed: {detail}"})
    return error_response(
        "ollama", 502, f"load failed: {detail}", "backend-failed", backend=backend.name
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.post("/v1/chat/completions", openai_chat),
            web.post("/v1/completions", openai_chat),
            web.post("/v1/embeddings", openai_chat),
            web.post("/v1/responses", openai_responses),
            web.post("/v1/messages", anthropic_messages),
            web.post("/v1/messages/count_tokens", anthropic_messages),
            web.get("/v1/models", openai_models),
            web.get("/v1/models/{model:.+}", openai_model),
            web.get("/", ollama_root),  # GET also answers HEAD
            web.get("/api/version", ollama_version),
            web.get("/api/tags", ollama_tags),
            web.get("/api/ps", ollama_ps),
            web.post("/api/show", ollama_show),
            web.post("/api/pull", ollama_pull),
            web.post("/api/push", ollama_push),
            web.post("/api/create", ollama_create),
            web.post("/api/copy", ollama_copy),
            web.delete("/api/delete", ollama_delete),
            web.post("/api/chat", ollama_chat),
            web.post("/api/generate", ollama_generate),
            web.post("/api/embed", ollama_embed),
            web.post("/api/embeddings", ollama_embeddings),
        ]
    )
