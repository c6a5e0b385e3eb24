"""Forward one model request: acquire a slot, send, stream the answer back, release.

The flow for every inference call (OpenAI or Ollama front):

1. ``Scheduler.acquire`` picks the backend (or queues, or refuses with 429/503).
2. The request is rewritten for that backend (model name; Ollama -> OpenAI translation when
   the backend does not speak Ollama) and sent.
3. Failures are classified. A *transport* failure before the first byte (connection
   refused or reset, no first byte within ``first_byte_timeout_s`` / ``load_timeout_s``,
   a 502/504 from a gateway in front of the backend) releases the slot, counts against the
   backend and retries on another one (``max_retries``); a busy answer (429, 503) retries
   without counting. An *answered* error (any other 4xx/5xx with a body) is this request's
   own: it goes back to the client in the front API's shape with the backend's message,
   and only feeds the error-rate rule (``router/health.py``). After the first byte nothing
   is retried: a failure becomes an error line in the stream.
4. Bytes are written to the client as they arrive (no buffering). A client that goes away
   cancels the handler, which closes the upstream connection; one that stops reading for
   ``client_write_timeout_s`` is cut off the same way, freeing its slot.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp import web

from modelfleet.router import translate
from modelfleet.router.backends import upstream_base, upstream_headers
from modelfleet.router.core import Router
from modelfleet.router.health import (
    answered_status,
    backend_at_fault,
    note_outcome,
    request_key,
    transport_failure,
)
from modelfleet.router.scheduler import Lease, NoBackend, RoutingError
from modelfleet.router.state import BackendState

Front = Literal["openai", "ollama", "anthropic"]
Translation = Literal[
    "raw", "ollama-chat", "ollama-generate", "ollama-embed", "ollama-embeddings", "openai-infill"
]

DRAIN_S = 1.0  # how often a non-streaming answer being read is looked in on (_read_rest)
BACKEND_HEADER = "X-Modelfleet-Backend"
REASON_HEADER = "X-Modelfleet-Reason"


class Stall(Exception):
    """The backend went silent mid-answer for longer than ``stall_timeout_s``."""


class ClientStopped(Exception):
    """The client read nothing for ``client_write_timeout_s`` (or went away) mid-answer."""


class StreamError(Exception):
    """The backend sent an error event mid-answer (its own message): the request's, not a
    fault of the backend's."""


BUSY = (429, 503)  # the backend is full or loading: try another, nothing is wrong with it
GATEWAY = (502, 504)  # a proxy in front of the backend lost it: a transport failure


@dataclass
class Call:
    """One inference request as the front API received it."""

    front: Front
    path: str  # front path, e.g. /api/chat or /v1/chat/completions
    endpoint: str  # chat | generate | embed | embeddings | openai | responses | messages
    body: dict[str, Any]
    model: str  # the fleet's name for the model (resolved)
    stream: bool
    request_id: str
    started: float = field(default_factory=time.monotonic)


@dataclass
class Upstream:
    path: str
    body: dict[str, Any]
    translation: Translation
    # the client wants one JSON answer, the backend was asked to stream it: put it together
    assemble: translate.StreamFormat | None = None


# the stream format of each generating path; what is not here (embeddings) cannot stream
STREAM_FORMATS: dict[str, translate.StreamFormat] = {
    "/v1/chat/completions": "openai",
    "/v1/completions": "openai",
    "/v1/responses": "responses",
    "/v1/messages": "anthropic",
    "/api/chat": "ollama",
    "/api/generate": "ollama",
    "/infill": "llama",
}
FIM_KINDS = ("llama-server", "llama-swap")  # serve fill-in-the-middle at /infill


@dataclass
class Outcome:
    """What the access log and metrics need to know about one request."""

    status: int = 0
    backend: str | None = None
    reason: str | None = None
    ttft_s: float | None = None
    queue_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 0
    error: str | None = None
    loaded: bool = False
    failure: str | None = None  # the last attempt's: "timeout", "transport", "busy"


# -- error shapes ---------------------------------------------------------------------------

_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def retry_after_no_backend(router: Router, model: str | None) -> int:
    """Seconds until an ejected backend that serves ``model`` is probed again (at least 1)."""
    now = time.monotonic()
    waits = [
        s.next_check - now
        for s in router.fleet.backends.values()
        if not s.healthy and (model is None or model in s.serves() or s.kind == "openai")
    ]
    if not waits:
        return router.config.queue.retry_after_s
    return max(1, math.ceil(min(waits)))


def retry_after_queue(router: Router, model: str) -> int:
    """Expected drain time of ``model``'s queue from *observed* service times.

    Observed for this model, else the mean of the other models' observations, else the
    configured default (nothing has finished yet).
    """
    fleet = router.fleet
    observed = fleet.service_s.get(model)
    if observed is None and fleet.service_s:
        observed = sum(fleet.service_s.values()) / len(fleet.service_s)
    service = observed if observed is not None else router.config.policy.default_service_s
    slots = 0
    for state in fleet.backends.values():
        ms = state.models.get(model)
        if ms is not None and ms.status != "cold" and state.healthy and not state.drained:
            slots += ms.slots
    waiting = fleet.queued.get(model, 0) + 1
    return max(router.config.queue.retry_after_s, math.ceil(waiting * service / max(1, slots)))


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(front: Front, status: int, message: str) -> dict[str, Any]:
    if front == "ollama":
        return {"error": message}
    if front == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def error_response(
    front: Front,
    status: int,
    message: str,
    reason: str,
    retry_after: int | None = None,
    backend: str = "none",
) -> web.Response:
    headers = {BACKEND_HEADER: backend, REASON_HEADER: reason}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.json_response(error_body(front, status, message), status=status, headers=headers)


def route_headers(lease: Lease, call: Call, attempts: int) -> dict[str, str]:
    return {
        BACKEND_HEADER: lease.backend.name,
        REASON_HEADER: lease.reason,
        "X-Modelfleet-Host": lease.backend.host,
        "X-Modelfleet-Queue-Ms": str(round(lease.queued_s * 1000)),
        "X-Modelfleet-Attempts": str(attempts + 1),
        "X-Request-Id": call.request_id,
    }


# -- the upstream request -------------------------------------------------------------------


def plan(call: Call, backend: BackendState, stream_upstream: bool = True) -> Upstream:
    """What to send ``backend`` for ``call``; ``stream_upstream``: ask for a stream even
    when the client wants one answer (the router's ``stream_upstream`` knob)."""
    up = _translated(call, backend)
    return _streamed(up, call) if stream_upstream else up


def _translated(call: Call, backend: BackendState) -> Upstream:
    upstream_model = backend.upstream_name(call.model)
    fim = bool(call.body.get("suffix")) and backend.kind in FIM_KINDS
    if fim and call.front == "openai" and call.path == "/v1/completions":
        body = translate.openai_infill_request(call.body, upstream_model)
        return Upstream("/infill", body, "openai-infill")
    if call.front != "ollama" or backend.kind == "ollama":
        return Upstream(call.path, {**call.body, "model": upstream_model}, "raw")
    if call.endpoint == "chat":
        body = translate.chat_request(call.body, upstream_model)
        return Upstream("/v1/chat/completions", body, "ollama-chat")
    if call.endpoint == "generate" and fim:
        body = translate.infill_request(call.body, upstream_model)
        return Upstream("/infill", body, "ollama-generate")
    if call.endpoint == "generate":
        path, body = translate.generate_request(call.body, upstream_model)
        return Upstream(path, body, "ollama-generate")
    translation: Translation = "ollama-embed" if call.endpoint == "embed" else "ollama-embeddings"
    return Upstream(
        "/v1/embeddings", translate.embed_request(call.body, upstream_model), translation
    )


def _streamed(up: Upstream, call: Call) -> Upstream:
    """Ask for a stream even when the client wants one answer (see ``StreamAssembler``)."""
    fmt = STREAM_FORMATS.get(up.path)
    if call.stream or fmt is None:
        return up
    up.body = {**up.body, "stream": True}
    if fmt == "openai":
        up.body["stream_options"] = {"include_usage": True}
    up.assemble = fmt
    return up


async def proxy(router: Router, request: web.Request, call: Call) -> web.StreamResponse:
    """Route and forward one call; always answers, always releases what it took."""
    outcome = Outcome()
    exclude: set[str] = set()
    passed_on = 0  # tries on backends that do not serve the path: not faults, not retries
    cfg = router.config
    try:
        while True:
            skip = _not_serving(router, call)  # empty but for NOT_EVERYWHERE paths
            holders = {s.name for s in router.fleet.backends_with(call.model)} if skip else set()
            if holders and holders <= skip:
                return _served_nowhere(router, call, outcome, sorted(holders))
            try:
                lease = await router.scheduler.acquire(
                    call.model, frozenset(exclude | skip), len(exclude)
                )
            except RoutingError as exc:
                if exclude and isinstance(exc, NoBackend):
                    return _all_failed(router, call, outcome, exclude)
                return _refused(router, call, outcome, exc)
            outcome.backend, outcome.reason = lease.backend.name, lease.reason
            outcome.queue_s, outcome.attempts = lease.queued_s, len(exclude) + passed_on + 1
            outcome.loaded = lease.loading
            outcome.error, outcome.status, outcome.failure = None, 0, None  # a retry starts clean
            router.metrics.queue_wait.labels(call.model).observe(lease.queued_s)
            answer = await _attempt(router, request, call, lease, outcome)
            if answer is not None:
                return answer
            if outcome.failure == "not-served":
                passed_on += 1  # not a fault: the next round skips it, may find one that serves
                continue
            exclude.add(lease.backend.name)
            if len(exclude) > cfg.max_retries:
                return _all_failed(router, call, outcome, exclude)
            router.metrics.retries.labels(lease.backend.name, call.model).inc()
    except (asyncio.CancelledError, ConnectionError):
        # the client went away: say so in the log rather than the status of a stream it cut
        outcome.status = 499
        outcome.error = outcome.error or "client closed the connection before the answer ended"
        raise
    finally:
        _account(router, call, outcome)


def _refused(router: Router, call: Call, outcome: Outcome, exc: RoutingError) -> web.Response:
    """Queue full, queue deadline or no backend at all: with a Retry-After from what was seen."""
    why = type(exc).__name__
    router.metrics.rejected.labels(call.model, why).inc()
    reason = {"QueueFull": "queue-full", "QueueTimeout": "queue-deadline"}.get(why, "no-backend")
    if reason == "no-backend":
        retry_after = retry_after_no_backend(router, call.model)
    else:
        retry_after = retry_after_queue(router, call.model)
    outcome.status, outcome.error, outcome.reason = exc.status, str(exc), reason
    return error_response(call.front, exc.status, str(exc), reason, retry_after)


def _all_failed(router: Router, call: Call, outcome: Outcome, tried: set[str]) -> web.Response:
    """Every backend tried failed before the first byte: 504 for timeouts, 503 busy, else 502."""
    status = {"timeout": 504, "busy": 503}.get(outcome.failure or "", 502)
    message = f"model {call.model!r}: {outcome.error} (tried {', '.join(sorted(tried))})"
    outcome.status, outcome.reason = status, "backend-failed"
    retry_after = retry_after_queue(router, call.model) if status == 503 else None
    return error_response(
        call.front,
        status,
        message,
        "backend-failed",
        retry_after=retry_after,
        backend=outcome.backend or "none",
    )


def _upstream_timeout(router: Router, call: Call, lease: Lease, up: Upstream) -> float:
    """How long to wait for response headers: a load may take minutes, a resident model not.

    Every generating request is streamed from the backend (``_streamed``), so its headers
    come with its first token; an embedding's come with the whole (short) answer. Either way
    a resident model answers within ``first_byte_timeout_s`` or the backend is hung. With
    ``stream_upstream: false`` a generating request's headers come with its whole answer,
    which may rightly take minutes: only ``load_timeout_s`` bounds it then.
    """
    cfg = router.config
    resident = not lease.loading and lease.backend.model(call.model).status == "loaded"
    whole_generation = not call.stream and up.assemble is None and up.path in STREAM_FORMATS
    if resident and not whole_generation:
        return cfg.first_byte_timeout_s
    return cfg.load_timeout_s


async def _attempt(
    router: Router, request: web.Request, call: Call, lease: Lease, outcome: Outcome
) -> web.StreamResponse | None:
    """One try on the leased backend; None means "failed before the first byte, retry"."""
    if lease.ready is not None:
        # evictions first; with replicas also the shared load lease, which may move the
        # request onto another replica's load of the same model (router/scheduler.py)
        try:
            await lease.ready
        except BaseException:
            router.scheduler.release(lease, ok=False, served=False)
            raise
        outcome.backend, outcome.reason = lease.backend.name, lease.reason
    backend = lease.backend
    gauge = router.metrics.in_flight.labels(backend.name, call.model)
    gauge.inc()
    ok = False
    resp: aiohttp.ClientResponse | None = None
    try:
        up = plan(call, backend, router.config.stream_upstream)
        timeout_s = _upstream_timeout(router, call, lease, up)
        try:
            # asyncio.timeout, not wait_for: no extra task per request on the hot path
            async with asyncio.timeout(timeout_s):
                resp = await router.http().post(
                    upstream_base(backend) + up.path,
                    json=up.body,
                    headers={**upstream_headers(backend), "X-Request-Id": call.request_id},
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                detail = f"no answer within {timeout_s:g}s"
                _transport_failure(router, backend, outcome, "timeout", detail)
            else:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                _transport_failure(router, backend, outcome, "connect", detail)
            return None
        if resp.status >= 400:
            try:
                async with asyncio.timeout(router.config.stall_timeout_s):
                    body = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                _transport_failure(router, backend, outcome, "cut", f"error body lost: {exc}")
                return None
            message = translate.openai_error_message(body)
            outcome.status = resp.status
            outcome.error = f"backend {backend.name} answered {resp.status}: {message}"
            if resp.status in BUSY:
                outcome.failure = "busy"
                return None  # full or loading: another backend may take it; not a fault
            if resp.status in GATEWAY:
                _transport_failure(router, backend, outcome, "gateway", outcome.error)
                return None
            if resp.status in (404, 405) and call.path in NOT_EVERYWHERE:
                ok = True  # it answered; it just does not speak this API (not served)
                router.record_success(backend)
                backend.not_serving[call.path, call.model] = (time.monotonic(), message)
                outcome.failure = "not-served"
                return None
            # an answered error belongs to this request: hand it back, leave health alone
            ok = True
            status = outcome.status = answered_status(resp.status, message)
            bad = backend_at_fault(status)
            note_outcome(router, backend, bad=bad, key=request_key(call.body) if bad else None)
            if bad:
                backend.record_failure(time.monotonic(), "5xx")  # error score only
                router.metrics.backend_failures.labels(backend.name, "5xx").inc()
            else:
                router.record_success(backend)
            outcome.error = message
            headers = route_headers(lease, call, outcome.attempts - 1)
            headers[REASON_HEADER] = "backend-error"
            if status == resp.status and _in_front_shape(call.front, body):
                headers["Content-Type"] = "application/json"  # its type/param/code as they are
                return web.Response(body=body, status=status, headers=headers)
            return web.json_response(
                error_body(call.front, status, message), status=status, headers=headers
            )
        router.record_success(backend)
        answer = await _relay(router, request, call, lease, resp, up, outcome)
        ok = outcome.error is None
        if ok:
            note_outcome(router, backend, bad=False)
        return answer
    finally:
        gauge.dec()
        if resp is not None:
            if ok:
                resp.release()
            else:
                resp.close()
        served = ok and outcome.failure != "not-served"
        router.scheduler.release(lease, ok=ok or lease.first_byte_at is not None, served=served)
        if ok:
            _keep_alive(router, call, lease)
        router.refresh_soon(backend)  # learn what the request changed (loads, evictions)


# paths some backends of a kind do not serve (llama-swappo: no /v1/responses; a generic
# OpenAI-compatible server: either); a 404 there means "not here", not "no such model"
NOT_EVERYWHERE = {"/v1/responses", "/v1/messages", "/v1/messages/count_tokens"}


NOT_SERVED_MEMORY_S = 600.0  # then such a backend is asked again (an upgrade may add the path)


def _not_serving(router: Router, call: Call) -> frozenset[str]:
    """Backends that lately answered 404/405 on this call's path for its model."""
    if call.path not in NOT_EVERYWHERE:
        return frozenset()
    now, key = time.monotonic(), (call.path, call.model)
    return frozenset(
        s.name
        for s in router.fleet.backends.values()
        if key in s.not_serving and now - s.not_serving[key][0] < NOT_SERVED_MEMORY_S
    )


def _served_nowhere(router: Router, call: Call, outcome: Outcome, names: list[str]) -> web.Response:
    """501 in the front's shape naming each backend with the model and its kind, never a bare
    404; no backend is asked again within NOT_SERVED_MEMORY_S."""
    backends = router.fleet.backends
    outcome.status, outcome.reason = 501, "not-served"
    outcome.error = "; ".join(
        f"backend {name} (kind {backends[name].kind}) does not serve {call.path}: "
        f"{backends[name].not_serving[call.path, call.model][1]}"
        for name in names
    )
    return error_response(call.front, 501, outcome.error, "not-served", backend=",".join(names))


def _in_front_shape(front: Front, body: bytes) -> bool:
    """Is a backend's error body already what this front's clients expect?"""
    try:
        obj = json.loads(body)
    except ValueError:
        return False
    error = obj.get("error") if isinstance(obj, dict) else None
    if front == "ollama":
        return isinstance(error, str)
    if front == "anthropic" and obj.get("type") != "error":
        return False
    return isinstance(error, dict) and isinstance(error.get("message"), str)


def _transport_failure(
    router: Router, backend: BackendState, outcome: Outcome, kind: str, detail: str
) -> None:
    """Connect error, timeout, cut stream, gateway error: the backend's fault, always."""
    transport_failure(router, backend, kind)
    outcome.failure = "timeout" if kind in ("timeout", "stall") else "transport"
    if not detail.startswith(f"backend {backend.name}"):
        detail = f"backend {backend.name}: {kind}: {detail}"
    outcome.error = detail


async def _chunks(resp: aiohttp.ClientResponse, stall_s: float) -> AsyncIterator[bytes]:
    while True:
        try:
            async with asyncio.timeout(stall_s):
                chunk = await resp.content.readany()
        except TimeoutError:
            raise Stall(f"no data for {stall_s:g}s") from None
        if not chunk:
            return
        yield chunk


async def _relay(
    router: Router,
    request: web.Request,
    call: Call,
    lease: Lease,
    resp: aiohttp.ClientResponse,
    up: Upstream,
    outcome: Outcome,
) -> web.StreamResponse | None:
    """Send the backend's answer on; None when it failed before anything reached the client."""
    headers = route_headers(lease, call, outcome.attempts - 1)
    stall_s = router.config.stall_timeout_s
    ctype = resp.headers.get("Content-Type", "application/json")
    streaming = "event-stream" in ctype or "ndjson" in ctype
    outcome.status = resp.status

    def first_byte() -> None:
        if lease.first_byte_at is None:
            router.scheduler.first_byte(lease)
            outcome.ttft_s = time.monotonic() - call.started

    if streaming and up.assemble is not None:
        return await _assemble(router, call, lease, resp, up, headers, outcome)
    if not streaming:
        try:
            data = b"".join([c async for c in _chunks(resp, stall_s)])
        except (Stall, aiohttp.ClientError) as exc:
            kind = "stall" if isinstance(exc, Stall) else "cut"
            _transport_failure(router, lease.backend, outcome, kind, f"answer lost: {exc}")
            return None  # nothing reached the client yet: retry elsewhere
        first_byte()
        return _whole(call, lease, up, data, headers, outcome)

    out = web.StreamResponse(status=resp.status)
    out.headers.update(headers)
    out.headers["Cache-Control"] = "no-cache"
    out.headers["X-Accel-Buffering"] = "no"
    if up.translation == "raw":
        out.content_type = ctype.split(";")[0]
    elif up.translation == "openai-infill":
        out.content_type = "text/event-stream"
    else:
        out.content_type = "application/x-ndjson"
    sniffer = _Sniffer(outcome)
    reply = (
        translate.OllamaReply(
            model=call.body.get("model", call.model),
            chat=up.translation == "ollama-chat",
            timing=translate.Timing(start=call.started, loaded=lease.loading),
        )
        if up.translation not in ("raw", "openai-infill")
        else None
    )
    sse = _Lines()
    client_model = call.body.get("model", call.model)
    upstream_model = up.body.get("model")
    renamer = (
        _Renamer(upstream_model, client_model)
        if up.translation == "raw" and upstream_model and upstream_model != client_model
        else None
    )
    write_s = router.config.client_write_timeout_s

    async def send(data: bytes | None = None) -> None:
        """Write to the client, giving up when it reads nothing for ``write_s``."""
        try:
            async with asyncio.timeout(write_s):
                if not out.prepared:
                    first_byte()
                    await out.prepare(request)
                if data:
                    await out.write(data)
        except TimeoutError:
            raise ClientStopped(f"the client read nothing for {write_s:g}s") from None
        except ConnectionError:
            # the client hung up and aiohttp has not cancelled us yet ("Cannot write to
            # closing transport"): the client's doing, never the backend's
            raise ClientStopped("client closed the connection before the answer ended") from None

    try:
        async for chunk in _chunks(resp, stall_s):
            if up.translation == "openai-infill":
                for line in sse.feed(chunk):
                    obj = _sse_data(line)
                    _raise_error_event(line, obj)
                    if obj is not None:
                        piece = translate.infill_completion(obj, client_model, chunk=True)
                        _count_tokens(piece, outcome)
                        await send(b"data: " + json.dumps(piece).encode() + b"\n\n")
                continue
            if reply is None:
                sniffer.feed(chunk)
                await send(renamer.feed(chunk) if renamer else chunk)
                continue
            await send()
            for line in sse.feed(chunk):
                obj = _sse_data(line)
                _raise_error_event(line, obj)
                if obj is None:
                    continue
                reply.chunk(obj)
                for piece in reply.lines():
                    await send(_ndjson(piece))
        await send(renamer.flush() if renamer else None)
        if up.translation == "openai-infill":
            await send(b"data: [DONE]\n\n")
        if reply is not None:
            reply.timing.first_byte = lease.first_byte_at
            reply.timing.end = time.monotonic()
            tool_line = reply.tool_call_line()
            if tool_line:
                await send(_ndjson(tool_line))
            final = reply.final(streamed=True)
            await send(_ndjson(final))
            outcome.prompt_tokens = final["prompt_eval_count"]
            outcome.completion_tokens = final["eval_count"]
    except ClientStopped as exc:
        # cut the client off: the finally in _attempt closes the upstream and frees the slot
        _cut_off(request, outcome, str(exc))
        return out
    except StreamError as exc:
        # answered, not lost: the client gets the backend's message as the stream's last
        # line (no "done" line that would make a partial answer look whole); health unchanged
        outcome.error = f"backend {lease.backend.name}: {exc}"
        try:
            await send(_stream_error(call.front, up, str(exc)))
        except ClientStopped as stopped:
            _cut_off(request, outcome, str(stopped))
            return out
    except (Stall, aiohttp.ClientError) as exc:
        kind = "stall" if isinstance(exc, Stall) else "cut"
        what = f"no data for {stall_s:g}s" if kind == "stall" else "stream cut"
        if not out.prepared:
            _transport_failure(router, lease.backend, outcome, kind, f"{what} ({exc})")
            return None  # nothing reached the client yet: retry elsewhere
        _transport_failure(router, lease.backend, outcome, kind, "")
        outcome.error = f"backend {lease.backend.name} failed mid-answer: {what}: {exc}"
        try:
            await send(_stream_error(call.front, up, outcome.error))
        except ClientStopped as stopped:
            _cut_off(request, outcome, str(stopped))
            return out
    await out.write_eof()
    return out


async def _assemble(
    router: Router,
    call: Call,
    lease: Lease,
    resp: aiohttp.ClientResponse,
    up: Upstream,
    headers: dict[str, str],
    outcome: Outcome,
) -> web.Response | None:
    """Read the whole stream, answer with one JSON object; None: failed, nothing sent, retry."""
    assert up.assemble is not None
    assembler = translate.StreamAssembler(up.assemble)
    stall_s = router.config.stall_timeout_s
    try:
        async with asyncio.timeout(stall_s):
            first = await resp.content.readany()
        if lease.first_byte_at is None:
            router.scheduler.first_byte(lease)
            outcome.ttft_s = time.monotonic() - call.started
        received = first + await _read_rest(resp.content, stall_s) if first else b""
    except TimeoutError:
        detail = f"answer lost: no data for {stall_s:g}s"
        _transport_failure(router, lease.backend, outcome, "stall", detail)
        return None
    except (Stall, aiohttp.ClientError) as exc:
        kind = "stall" if isinstance(exc, Stall) else "cut"
        _transport_failure(router, lease.backend, outcome, kind, f"answer lost: {exc}")
        return None
    for obj in _parse_all(_payloads(received)):
        assembler.feed(obj)
    if assembler.error is None and b"error:" in received:
        field = _ERROR_FIELD.search(received)
        if field is not None:
            assembler.error = _field_error(field.group(1))
    if assembler.error is not None:  # the backend answered with an error, in the stream
        error = assembler.error
        message = translate.openai_error_message(json.dumps({"error": error}).encode())
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 500  # its own status
        outcome.status, outcome.error = status, f"backend {lease.backend.name}: {message}"
        headers[REASON_HEADER] = "backend-error"
        return web.json_response(
            error_body(call.front, status, message), status=status, headers=headers
        )
    whole = assembler.result()
    if whole is None:
        detail = "the stream ended before the answer was complete"
        _transport_failure(router, lease.backend, outcome, "cut", detail)
        return None
    return _whole(call, lease, up, b"", headers, outcome, assembled=whole)


async def _read_rest(content: aiohttp.StreamReader, stall_s: float) -> bytes:
    """The rest of an answer, read when it has all arrived: one wake-up, not one per chunk.

    A backend writes every token as its own chunk; waking up for each costs far more than
    the bytes (tens of microseconds a chunk in Python). So this waits for the end and looks
    in every ``DRAIN_S`` to take what came (the reader stops reading from the socket when
    its buffer fills) and to notice a stream that stopped (no byte for ``stall_s``).
    """
    loop = asyncio.get_running_loop()
    parts: list[bytes] = []
    last_data = loop.time()
    every_s = min(DRAIN_S, stall_s / 2)
    while True:
        try:
            async with asyncio.timeout(every_s):
                await content.wait_eof()
        except TimeoutError:
            pass
        data = content.read_nowait()  # raises what broke the connection, if anything did
        if data:
            parts.append(data)
            last_data = loop.time()
        if content.is_eof():
            return b"".join(parts)
        if loop.time() - last_data >= stall_s:
            raise Stall(f"no data for {stall_s:g}s")


# SSE "data:" lines and NDJSON lines carry the JSON (not "data: [DONE]" nor SSE's "event:")
_PAYLOAD = re.compile(rb"^(?:data:[ \t]*)?(\{.*)", re.MULTILINE)  # a trailing \r is JSON space
# an SSE "error:" field: how older llama-server builds send an error once the 200 is out
_ERROR_FIELD = re.compile(rb"^error:(.*)", re.MULTILINE)


def _field_error(value: bytes) -> Any:
    """The error object (else its text) of an SSE ``error:`` field's value."""
    value = value.strip()
    return _json_line(value) or value.decode(errors="replace")


def _payloads(stream: bytes) -> list[bytes]:
    """The JSON text of every SSE ``data:`` line and NDJSON line of a whole stream."""
    return _PAYLOAD.findall(stream)


def _parse_all(payloads: list[bytes]) -> list[dict[str, Any]]:
    """All objects of a stream; one JSON parse of them all unless one line is bad."""
    try:
        objs = orjson.loads(b"[" + b",".join(payloads) + b"]")
    except orjson.JSONDecodeError:
        objs = [_json_line(p) for p in payloads]
    return [obj for obj in objs if isinstance(obj, dict)]


def _cut_off(request: web.Request, outcome: Outcome, why: str) -> None:
    """Drop a client that stopped reading; logged as 499 like one that went away."""
    outcome.status = 499
    outcome.error = f"{why}; answer cancelled"
    if request.transport is not None:
        request.transport.abort()


def _whole(
    call: Call,
    lease: Lease,
    up: Upstream,
    data: bytes,
    headers: dict[str, str],
    outcome: Outcome,
    assembled: dict[str, Any] | None = None,
) -> web.Response:
    client_model = call.body.get("model", call.model)
    obj: Any = assembled
    if obj is None:
        try:
            obj = orjson.loads(data) if data else {}
        except ValueError:  # orjson.JSONDecodeError is one
            obj = None
    if up.translation == "raw" or not isinstance(obj, dict):
        if isinstance(obj, dict):
            _count_tokens(obj, outcome)
            renamed = obj.get("model") not in (None, client_model)
            if renamed:
                obj["model"] = client_model
            if renamed or assembled is not None:
                return json_answer(obj, status=outcome.status, headers=headers)
        return web.Response(
            body=data,
            status=outcome.status,
            headers={**headers, "Content-Type": "application/json"},
        )
    elapsed_ns = int((time.monotonic() - call.started) * 1e9)
    if up.translation == "openai-infill":
        answer = translate.infill_completion(obj, client_model, chunk=False)
        _count_tokens(answer, outcome)
        return json_answer(answer, headers=headers)
    if up.translation in ("ollama-embed", "ollama-embeddings"):
        _count_tokens(obj, outcome)
        legacy = up.translation == "ollama-embeddings"
        return json_answer(
            translate.embed_response(obj, client_model, legacy, elapsed_ns), headers=headers
        )
    reply = translate.OllamaReply(
        model=client_model,
        chat=up.translation == "ollama-chat",
        timing=translate.Timing(
            start=call.started, loaded=lease.loading, first_byte=lease.first_byte_at
        ),
    )
    reply.whole(obj)
    final = reply.final(streamed=False)
    outcome.prompt_tokens = final["prompt_eval_count"]
    outcome.completion_tokens = final["eval_count"]
    return json_answer(final, headers=headers)


def json_answer(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """``web.json_response`` with orjson: several times faster for a whole model answer."""
    try:
        body = orjson.dumps(obj)
    except TypeError:  # what orjson does not take (an integer over 64 bits): the slow way
        body = json.dumps(obj).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _count_tokens(obj: dict[str, Any], outcome: Outcome) -> None:
    usage = obj.get("usage")
    for inner in ("message", "response"):  # Anthropic message_start, Responses events
        if not isinstance(usage, dict) and isinstance(obj.get(inner), dict):
            usage = obj[inner].get("usage")
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        outcome.prompt_tokens = prompt if prompt is not None else outcome.prompt_tokens
        outcome.completion_tokens = (
            completion if completion is not None else outcome.completion_tokens
        )
    if "eval_count" in obj or "prompt_eval_count" in obj:
        outcome.prompt_tokens = obj.get("prompt_eval_count", outcome.prompt_tokens)
        outcome.completion_tokens = obj.get("eval_count", outcome.completion_tokens)


class _Lines:
    """Splits a byte stream into complete lines."""

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self.tail + chunk
        *lines, self.tail = data.split(b"\n")
        return lines


class _Renamer:
    """Puts the client's model name back into passthrough NDJSON/SSE lines (whole lines only).

    The name sits at the top of chat chunks and Ollama lines, and one level down in the
    Responses API's ``response.*`` events and Anthropic's ``message_start``.
    """

    def __init__(self, upstream: str, client: str) -> None:
        self.upstream, self.client = upstream, client
        self.lines = _Lines()

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._renamed(line) + b"\n" for line in self.lines.feed(chunk))

    def flush(self) -> bytes:
        """What is left after the last newline (a stream that does not end with one)."""
        tail, self.lines.tail = self.lines.tail, b""
        return self._renamed(tail) if tail else b""

    def _renamed(self, line: bytes) -> bytes:
        prefix, payload = (
            (b"data: ", line[5:].strip()) if line.startswith(b"data:") else (b"", line)
        )
        obj = _json_line(payload) if payload.startswith(b"{") else None
        if obj is None:
            return line
        holders = [
            obj,
            *(obj[key] for key in ("response", "message") if isinstance(obj.get(key), dict)),
        ]
        renamed = False
        for holder in holders:
            if holder.get("model") == self.upstream:
                holder["model"] = self.client
                renamed = True
        return prefix + json.dumps(obj, separators=(",", ":")).encode() if renamed else line


class _Sniffer:
    """Reads token counts out of a passthrough stream without holding it up."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.lines = _Lines()

    def feed(self, chunk: bytes) -> None:
        for line in self.lines.feed(chunk):
            if b'"usage"' not in line and b'"done":true' not in line:
                continue
            obj = _sse_data(line) if line.startswith(b"data:") else _json_line(line)
            if obj is not None:
                _count_tokens(obj, self.outcome)


def _json_line(line: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _sse_data(line: bytes) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return None
    return _json_line(payload)


def _raise_error_event(line: bytes, obj: dict[str, Any] | None) -> None:
    """Raise ``StreamError`` when ``line`` (``obj``: its ``data:``, parsed) is an error event
    of an OpenAI-shaped stream: ``data: {"error": ...}`` (llama-server) or an SSE ``error:``
    field (older llama-server builds)."""
    if obj is not None:
        if "error" not in obj or obj.get("choices"):
            return
        error = obj["error"]
    elif line.startswith(b"error:"):
        error = _field_error(line[6:])
    else:
        return
    raise StreamError(translate.openai_error_message(json.dumps({"error": error}).encode()))


def _ndjson(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _stream_error(front: Front, up: Upstream, message: str) -> bytes:
    if front == "ollama":
        return _ndjson({"error": message})
    if front == "anthropic":
        return (
            b"event: error\ndata: " + json.dumps(error_body(front, 502, message)).encode() + b"\n\n"
        )
    return b"data: " + json.dumps(error_body("openai", 502, message)).encode() + b"\n\n"


def _keep_alive(router: Router, call: Call, lease: Lease) -> None:
    """Honour an Ollama client's ``keep_alive`` on backends that have no such knob."""
    if call.front != "ollama" or lease.backend.kind == "ollama" or "keep_alive" not in call.body:
        return
    seconds = parse_duration(call.body["keep_alive"])
    if seconds is None or not lease.backend.can_load:
        return
    ms = lease.backend.model(call.model)
    router.set_pinned(lease.backend, call.model, seconds < 0)
    ms.unload_at = None if seconds < 0 else time.monotonic() + seconds
    if seconds == 0 and ms.in_flight == 0:
        ms.unload_at = None
        router.scheduler.books.unloaded(lease.backend, call.model, time.monotonic())
        router.spawn(router.unload(lease.backend.name, call.model))


# Go's duration units; micro is the micro sign or the Greek mu, as Go takes both
_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0}
_UNITS |= {"m": 60.0, "h": 3600.0}
_NUMBER = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)"  # ASCII digits only, as Go reads them
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))  # "ms" before "m"
_GO_DURATION = re.compile(rf"([+-]?)((?:{_NUMBER}(?:{_UNIT}))+)")
_SECONDS = re.compile(rf"[+-]?{_NUMBER}")


def parse_duration(value: Any) -> float | None:
    """Ollama ``keep_alive`` in seconds, or None when it is not one.

    A finite number of seconds, or a string Go's ``time.ParseDuration`` takes (``"1h30m"``,
    ``".5s"``, ``"-1m"``), or seconds in a string (``"300"``, ``"-1"``: what
    ``OLLAMA_KEEP_ALIVE`` takes). Example: ``parse_duration("1m30s") == 90.0``;
    ``parse_duration("+") is None`` (Go refuses it; it is not 0, an unload).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if not isinstance(value, str):
        try:
            seconds = float(value)  # an int of 400 digits overflows
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    text = value.strip()  # "" fails in Go too: it is not "0", never an unload
    if _SECONDS.fullmatch(text):
        return float(text)
    match = _GO_DURATION.fullmatch(text)
    if match is None:
        return None
    parts = re.findall(rf"({_NUMBER})({_UNIT})", match.group(2))
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    return -seconds if match.group(1) == "-" else seconds


def _account(router: Router, call: Call, outcome: Outcome) -> None:
    latency = time.monotonic() - call.started
    backend = outcome.backend or "none"
    status = outcome.status or 499  # the client went away before any answer
    m = router.metrics
    m.requests.labels(backend, call.model, call.front, str(status)).inc()
    m.latency.labels(backend, call.model).observe(latency)
    if outcome.ttft_s is not None:
        m.ttft.labels(backend, call.model).observe(outcome.ttft_s)
    if not router.access_log.enabled:
        return
    router.access_log.write(
        {
            "kind": "inference",
            "request_id": call.request_id,
            "api": call.front,
            "path": call.path,
            "model": call.model,
            "backend": outcome.backend,
            "reason": outcome.reason,
            "status": status,
            "stream": call.stream,
            "latency_s": round(latency, 6),
            "duration_s": round(latency, 6),  # the same; the name the trace converter reads
            "ttft_s": None if outcome.ttft_s is None else round(outcome.ttft_s, 6),
            "queue_s": round(outcome.queue_s, 6),
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "attempts": outcome.attempts,
            "loaded": outcome.loaded,
            "error": outcome.error,
        }
    )
