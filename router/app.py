"""The aiohttp app factory: ``create_app(config) -> web.Application``.

Layout (aiohttp's own examples): routes live in ``router/api.py`` (front APIs) and
``router/admin.py`` (operations); long-lived resources (the upstream ``ClientSession``,
the health-check and refresh tasks) live in ``cleanup_ctx``; state hangs off the app under
the typed key ``ROUTER``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from modelfleet.router.admin import setup_admin_routes
from modelfleet.router.api import IS_ADMIN, ROUTER, setup_routes
from modelfleet.router.config import RouterConfig
from modelfleet.router.core import Router
from modelfleet.router.cors import add_cors_headers, compile_origins, cors_middleware
from modelfleet.router.health import health_loop, refresh_loop, run_forever
from modelfleet.router.proxy import BACKEND_HEADER, REASON_HEADER, Front, error_body

log = logging.getLogger("modelfleet.router")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STARTUP_JOIN_S = 2.0  # how long start-up waits for Redis before serving alone
PUBLIC_PATHS = {"/healthz", "/readyz", "/dashboard"}


def front_of(path: str) -> Front:
    if path.startswith("/v1/messages"):
        return "anthropic"
    return "openai" if path.startswith("/v1/") else "ollama"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("X-Api-Key")


def _matches(given: str | None, secrets: list[str]) -> bool:
    if given is None:
        return False
    # compare against every key, always, so timing says nothing about which one was close
    found = False
    # a header that is not UTF-8 reaches us with surrogate escapes: compare its raw bytes
    raw = given.encode("utf-8", "surrogateescape")
    for secret in secrets:
        found |= hmac.compare_digest(raw, secret.encode())
    return found


def _deny(request: web.Request, status: int, message: str) -> web.Response:
    response = web.json_response(
        error_body(front_of(request.path), status, message),
        status=status,
        headers={BACKEND_HEADER: "none", REASON_HEADER: "unauthorized"},
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="modelfleet"'
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    router = request.app[ROUTER]
    path = request.path
    if path in PUBLIC_PATHS:
        return await handler(request)
    admin = bool(router.admin_token) and _matches(_bearer(request), [router.admin_token or ""])
    request[IS_ADMIN] = admin  # model management (router/api.py) needs it
    if path.startswith("/admin/"):
        if not router.admin_token:
            return _deny(request, 403, "admin API disabled: set admin_token in the router config")
        if not admin:
            return _deny(request, 401, "admin API needs 'Authorization: Bearer <admin token>'")
        return await handler(request)
    if router.client_keys and not admin and not _matches(_bearer(request), router.client_keys):
        return _deny(
            request,
            401,
            "missing or wrong API key ('Authorization: Bearer <key>' or 'x-api-key: <key>')",
        )
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Router-made errors in the front API's own shape; every answer names backend and reason."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text or exc.reason
        if exc.content_type != "application/json" or not message.startswith("{"):
            if exc.status == 413:
                message = (
                    f"request body too large: the limit is "
                    f"{request.app[ROUTER].config.max_body_mb:g} MB (max_body_mb)"
                )
            response = web.json_response(
                error_body(front_of(request.path), exc.status, message), status=exc.status
            )
        else:
            response = web.Response(
                text=message, status=exc.status, content_type="application/json"
            )
        for key in ("Allow", "Retry-After"):
            if key in exc.headers:
                response.headers[key] = exc.headers[key]
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:  # a bug: answer in the front's shape, keep the traceback in the log
        log.exception("internal error on %s %s", request.method, request.path)
        response = web.json_response(
            error_body(front_of(request.path), 500, "internal router error (logged)"), status=500
        )
    if not response.prepared:
        response.headers.setdefault(BACKEND_HEADER, "router")
        response.headers.setdefault(REASON_HEADER, "local")
        if response.status == 503:  # every 503 says when to come back
            response.headers.setdefault(
                "Retry-After", str(request.app[ROUTER].config.queue.retry_after_s)
            )
    return response


async def _close_when_stopping(request: web.Request, response: web.StreamResponse) -> None:
    """After SIGTERM every response says ``Connection: close``: the client's next request opens
    a new connection, which waits in the socket's backlog for the next process, instead of
    going out on this one just as the stopping process closes it."""
    if request.app[ROUTER].stopping:
        response.force_close()
        response.headers["Connection"] = "close"


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    router = app[ROUTER]
    cfg = router.config
    router.session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout_s),
        connector=aiohttp.TCPConnector(limit=0),
        auto_decompress=False,
    )
    await router.refresh_all()
    tasks = [
        asyncio.create_task(run_forever(lambda: health_loop(router), "health")),
        asyncio.create_task(run_forever(lambda: refresh_loop(router), "refresh")),
    ]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await router.session.close()
    router.access_log.close()


async def _shared_state(app: web.Application) -> AsyncIterator[None]:
    """Replicas: follow the shared state in Redis (and reconnect) for the app's lifetime."""
    shared = app[ROUTER].shared
    if shared is None:
        yield
        return
    task = asyncio.create_task(shared.run())
    try:  # start connected when Redis is there; without it the router serves alone
        await asyncio.wait_for(shared.joined.wait(), STARTUP_JOIN_S)
    except TimeoutError:
        log.warning("shared state: Redis not reachable at start; serving alone meanwhile")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await shared.close()


def create_app(config: RouterConfig, config_path: str | Path | None = None) -> web.Application:
    """Build the router app. ``config_path`` lets ``POST /admin/reload`` re-read the file.

    Example::

        app = create_app(load_config("router.yaml"), "router.yaml")
        sock = listen_socket("127.0.0.1", 11434)
        asyncio.run(serve(app, sock, shutdown_timeout=60.0, accept_grace=1.0))

    ``listen_socket`` and ``serve`` are in ``router/__main__.py``; ``serve`` stops without
    cutting a request (aiohttp's ``web.run_app`` drops idle and just-accepted connections on
    SIGTERM).
    """
    cors = cors_middleware(compile_origins(config.cors_origins), _deny)
    app = web.Application(
        middlewares=[cors, error_middleware, auth_middleware],
        client_max_size=int(config.max_body_mb * 1024 * 1024),
    )
    app[ROUTER] = Router(config, Path(config_path) if config_path else None)
    setup_routes(app)
    setup_admin_routes(app)
    app.on_response_prepare.append(add_cors_headers)
    app.on_response_prepare.append(_close_when_stopping)
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.append(_shared_state)
    return app
