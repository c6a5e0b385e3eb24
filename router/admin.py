"""Operations: admin API (bearer token), health probes, Prometheus metrics, dashboard."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelfleet.router.api import ROUTER, router_of
from modelfleet.router.backends import BackendError
from modelfleet.router.config import ConfigError
from modelfleet.router.core import Router
from modelfleet.router.state import BackendState


def shown_url(url: str) -> str:
    """A backend URL as /admin/state shows it: without user and password (a backend behind
    basic auth is configured as ``http://user:password@host``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def state_snapshot(router: Router) -> dict[str, Any]:
    """Everything the dashboard shows; no secrets (keys and tokens never leave config)."""
    now, now_wall = time.monotonic(), time.time()
    fleet = router.fleet
    hosts: dict[str, dict[str, Any]] = {}
    backends = []
    for state in fleet.backends.values():
        host = hosts.setdefault(
            state.host, {"name": state.host, "vram_mb": 0, "used_mb": 0, "backends": []}
        )
        host["vram_mb"] = max(host["vram_mb"], state.config.vram_mb)
        host["backends"].append(state.name)
        models = []
        for ms in sorted(state.models.values(), key=lambda m: m.model):
            if ms.status != "cold":
                host["used_mb"] += ms.size_mb if ms.vram_mb is None else ms.vram_mb
            if ms.status == "cold" and not ms.in_flight:
                continue
            models.append(
                {
                    "model": ms.model,
                    "status": ms.status,
                    "size_mb": ms.size_mb,
                    "vram_mb": ms.vram_mb,
                    "spilled": ms.vram_mb is not None
                    and ms.size_mb > 0
                    and ms.vram_mb < ms.size_mb,
                    "in_flight": ms.in_flight,
                    "slots": ms.slots,
                    "expires_in_s": None
                    if ms.expires_at is None
                    else round(ms.expires_at - now_wall),
                    "idle_s": round(now - ms.last_used) if ms.last_used else None,
                    "pinned": ms.pinned,
                }
            )
        backends.append(
            {
                "name": state.name,
                "kind": state.kind,
                "mode": state.mode or None,
                "url": shown_url(state.config.url),
                "host": state.host,
                "healthy": state.healthy,
                "drained": state.drained,
                "removing": state.removing,
                "vram_mb": state.config.vram_mb,
                "slots": state.config.slots,
                "in_flight": state.in_flight(),
                "error_score": round(state.error_score(now), 3),
                "failures": dict(state.counters),
                "last_error": state.last_error,
                "catalog": sorted(state.catalog()),
                "models": models,
            }
        )
    return {
        "fleet": router.config.fleet,
        "time": now_wall,
        "uptime_s": round(now_wall - router.started),
        "hosts": list(hosts.values()),
        "backends": backends,
        "shared_state": router.shared.snapshot() if router.shared else {"mode": "off"},
        "queues": dict(fleet.queued),
        "demand_rps": {m: round(r, 4) for m, r in fleet.demand.rates(now).items()},
        "load_s": {m: round(v, 3) for m, v in fleet.load_s.items()},
        "service_s": {m: round(v, 3) for m, v in fleet.service_s.items()},
        "decisions": [
            {
                "at": d.at,
                "model": d.model,
                "action": d.action,
                "reason": d.reason,
                "backend": d.backend,
                "evict": [f"{b}/{m}" for b, m in d.evict],
                "queued": d.queued,
            }
            for d in list(fleet.decisions)[-50:]
        ][::-1],
    }


async def admin_state(request: web.Request) -> web.Response:
    return web.json_response(state_snapshot(router_of(request)))


def _backend(request: web.Request) -> tuple[Router, BackendState]:
    router = router_of(request)
    name = request.match_info["name"]
    state = router.fleet.backends.get(name)
    if state is None:
        raise web.HTTPNotFound(
            text=f'{{"error": "backend {name!r} is not configured"}}',
            content_type="application/json",
        )
    return router, state


async def _share_drain(router: Router, state: BackendState) -> dict[str, Any]:
    """Tell the other replicas (``router/shared.py``); while Redis is away it holds here and
    is shared when Redis returns."""
    if router.shared is None:
        return {}
    shared = await router.shared.set_drained(state.name, state.drained)
    return {"shared": shared, "shared_state": router.shared_mode}


async def admin_drain(request: web.Request) -> web.Response:
    router, state = _backend(request)
    state.drained = True
    body = {"backend": state.name, "drained": True, "in_flight": state.in_flight()}
    return web.json_response(body | await _share_drain(router, state))


async def admin_undrain(request: web.Request) -> web.Response:
    router, state = _backend(request)
    state.drained = False
    router.scheduler.kick()
    body = {"backend": state.name, "drained": False}
    return web.json_response(body | await _share_drain(router, state))


async def _model_arg(request: web.Request) -> str:
    try:
        body = await request.json()
    except (RequestPayloadError, HttpProcessingError):
        request.content.feed_eof()  # undecodable: do not let aiohttp drain it (see api.py)
        body = {}
    except (ValueError, RecursionError):
        body = {}
    model = (body or {}).get("model") if isinstance(body, dict) else None
    model = model or request.query.get("model")
    if not model or not isinstance(model, str):
        raise web.HTTPBadRequest(
            text='{"error": "missing field \'model\'"}', content_type="application/json"
        )
    return str(model)


def _not_served(state: BackendState, asked: str, model: str) -> web.Response | None:
    """404 naming what the backend serves, when ``model`` is not one of them."""
    if model in state.serves():
        return None
    served = ", ".join(sorted(state.serves())) or "none known yet"
    error = f"backend {state.name!r} does not serve model {asked!r} (it serves: {served})"
    return web.json_response({"error": error}, status=404)


async def admin_load(request: web.Request) -> web.Response:
    router, state = _backend(request)
    asked = await _model_arg(request)
    model = router.fleet.resolve(asked) or asked
    if (refused := _not_served(state, asked, model)) is not None:
        return refused
    if state.model(model).status == "loaded":  # loading is idempotent, as in Ollama
        return web.json_response({"backend": state.name, "model": model, "status": "loaded"})
    books = router.scheduler.books  # residency changes go through the one bookkeeping
    books.set_status(state.model(model), "loading", time.monotonic())
    router.metrics.loads.labels(state.name, model, "admin").inc()
    # the other replicas see the load at once (requests for the model join it), not at their
    # next poll; an admin load takes no load lease: the operator chose the backend
    if router.shared is not None:
        router.shared.publish("load", state.name, model)
    try:
        await router.adapter(state).load(model)
    except (BackendError, aiohttp.ClientError, TimeoutError) as exc:
        books.unloaded(state, model, time.monotonic())
        if router.shared is not None:
            router.shared.publish("load-failed", state.name, model)
        return web.json_response({"error": f"load of {model} on {state.name}: {exc}"}, status=502)
    books.loaded(state, model, time.monotonic())  # learns the load time too
    if router.shared is not None:
        router.shared.publish("loaded", state.name, model)
    await router.refresh(state)
    return web.json_response({"backend": state.name, "model": model, "status": "loaded"})


async def admin_unload(request: web.Request) -> web.Response:
    router, state = _backend(request)
    asked = await _model_arg(request)
    model = router.fleet.resolve(asked) or asked
    if (refused := _not_served(state, asked, model)) is not None:
        return refused
    try:
        await router.adapter(state).unload(model)
    except (BackendError, aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response({"error": f"unload of {model} on {state.name}: {exc}"}, status=502)
    router.scheduler.books.unloaded(state, model, time.monotonic())
    if router.shared is not None:
        router.shared.publish("evict", state.name, model)
    await router.refresh(state)
    return web.json_response({"backend": state.name, "model": model, "status": "cold"})


async def admin_reload(request: web.Request) -> web.Response:
    router = router_of(request)
    try:
        config = router.reload()
    except (ConfigError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    await router.refresh_all()
    return web.json_response({"reloaded": True, "backends": [b.name for b in config.backends]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    router = router_of(request)
    ready = [s.name for s in router.fleet.backends.values() if s.healthy and not s.drained]
    status = 200 if ready else 503
    body = {"ready": bool(ready), "backends": ready, "shared_state": router.shared_mode}
    return web.json_response(body, status=status)


async def metrics(request: web.Request) -> web.Response:
    router = router_of(request)
    # one series per model: an alias shares its model's queue
    names = {router.fleet.resolve(name) or name for name in router.fleet.known_models()}
    # rebuilt from the fleet as it is now: a backend or model a reload dropped must not go
    # on reporting its last value (a removed backend "healthy" for ever)
    router.metrics.queue_depth.clear()
    for model in set(router.fleet.queued) | names:
        router.metrics.queue_depth.labels(model).set(router.fleet.queued.get(model, 0))
    router.metrics.backend_healthy.clear()
    for state in router.fleet.backends.values():
        router.metrics.backend_healthy.labels(state.name).set(1 if state.healthy else 0)
    body = generate_latest(router.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def dashboard(request: web.Request) -> web.Response:
    html = resources.files("modelfleet.router").joinpath("static/dashboard.html").read_text()
    return web.Response(text=html, content_type="text/html")


def setup_admin_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/admin/state", admin_state),
            web.post("/admin/backends/{name}/drain", admin_drain),
            web.post("/admin/backends/{name}/undrain", admin_undrain),
            web.post("/admin/backends/{name}/load", admin_load),
            web.post("/admin/backends/{name}/unload", admin_unload),
            web.post("/admin/reload", admin_reload),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/dashboard", dashboard),
        ]
    )


__all__ = ["ROUTER", "setup_admin_routes", "state_snapshot"]
