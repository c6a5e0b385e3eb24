"""The floor for an aiohttp proxy: the least a Python proxy on aiohttp does per request.

Not a router and not part of the product: a reference target for ``bench/proxy_overhead.py``
(``--targets aiohttp-floor``). It forwards ``POST /v1/chat/completions`` to one backend with
one keep-alive pool and passes the answer through untouched: the body as bytes (no JSON
parsing, no model lookup, no queue, no metrics, no logging), a stream chunk by chunk as it
arrives. Whatever the modelfleet router costs above this is its own features; what this
costs above ``direct`` is aiohttp's server and client on this machine.

Loopback only::

    python -m bench.floor_proxy --port 18081 --backend http://127.0.0.1:18080
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
BACKEND = web.AppKey("backend", str)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    async with session.post(request.app[BACKEND] + request.path, data=body, headers=headers) as up:
        if up.content_type != "text/event-stream":
            return web.Response(body=await up.read(), status=up.status,
                                content_type=up.content_type)  # fmt: skip
        response = web.StreamResponse(status=up.status)
        response.headers.update(
            {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
        )
        await response.prepare(request)
        async for data in up.content.iter_any():
            await response.write(data)
        await response.write_eof()
        return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(backend: str) -> web.Application:
    app = web.Application()
    app[BACKEND] = backend.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", forward)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="e.g. http://127.0.0.1:18080")
    args = parser.parse_args()
    web.run_app(create_app(args.backend), host=args.host, port=args.port, access_log=None,
                print=None)  # fmt: skip


if __name__ == "__main__":
    main()
