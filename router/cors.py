"""CORS for browser clients (Open WebUI direct connections, extensions, editor webviews).

Allowed origins come from ``cors_origins`` in router.yaml; the default is what Ollama
allows by default (``OLLAMA_ORIGINS`` unset): localhost, 127.0.0.1 and 0.0.0.0 on any
port over http or https, and the ``app://``, ``file://`` and ``tauri://`` schemes. A
pattern's ``*`` matches within one origin (``http://localhost:*``); ``"*"`` alone allows any.

The admin API and the dashboard never get CORS headers: a page elsewhere cannot read them.
A request from an origin that is neither allowed nor the router's own gets 403, as Ollama
does. Preflights are answered before authentication (browsers send no credentials there).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OLLAMA_DEFAULT_ORIGINS = [
    f"{scheme}://{host}{port}"
    for host in ("localhost", "127.0.0.1", "0.0.0.0")
    for scheme in ("http", "https")
    for port in ("", ":*")
] + ["app://*", "file://*", "tauri://*"]

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, X-Api-Key"
EXPOSE_HEADERS = (
    "X-Modelfleet-Backend, X-Modelfleet-Reason, X-Modelfleet-Host, X-Modelfleet-Queue-Ms, "
    "X-Modelfleet-Attempts, X-Request-Id, Retry-After"
)
ALLOWED = web.RequestKey("cors_origin", str)  # the request's Origin, once found allowed


def compile_origins(patterns: list[str]) -> re.Pattern[str]:
    """One regex for all patterns; ``*`` matches any run of characters but ``/``."""
    parts = [".*" if p == "*" else re.escape(p).replace(r"\*", "[^/]*") for p in patterns]
    return re.compile("|".join(f"(?:{p})" for p in parts) or "(?!)", re.IGNORECASE)


def _private(path: str) -> bool:
    return path.startswith("/admin/") or path == "/dashboard"


def _same_origin(request: web.Request, origin: str) -> bool:
    return origin.split("://", 1)[-1].lower() == request.host.lower()


def cors_middleware(
    allowed: re.Pattern[str], deny: Callable[[web.Request, int, str], web.Response]
) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        if _private(request.path):
            if request.method == "OPTIONS":
                return web.Response(status=403, text="the admin API takes no cross-origin calls")
            return await handler(request)  # the dashboard's own calls: same origin, no headers
        if not allowed.fullmatch(origin):
            if _same_origin(request, origin):
                return await handler(request)
            message = f"origin {origin!r} is not allowed (cors_origins in the router config)"
            return deny(request, 403, message)
        request[ALLOWED] = origin
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            asked = request.headers.get("Access-Control-Request-Headers")
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": asked or ALLOW_HEADERS,
                    "Access-Control-Max-Age": "43200",
                },
            )
        return await handler(request)

    return middleware


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: so streamed answers get the headers before their first byte."""
    origin = request.get(ALLOWED)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
