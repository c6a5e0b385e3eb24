"""Background work: active health checks with thresholds and backoff, residency refresh.

Both run as tasks owned by the app's ``cleanup_ctx`` (see ``router/app.py``).

Health: every ``health.interval_s`` each backend's cheap probe runs (Ollama
``/api/version``, llama-swap and llama-server ``/health``, openai ``/v1/models``).
``fail_threshold`` failures in a row (probes or passive signals from real requests) eject
it; an ejected backend is probed with doubling backoff up to ``max_backoff_s`` and comes
back after ``success_threshold`` good probes in a row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from modelfleet.router.core import Router
from modelfleet.router.state import BackendState

log = logging.getLogger("modelfleet.router")


async def check_backend(router: Router, state: BackendState) -> bool:
    cfg = router.config.health
    try:
        ok = await router.adapter(state).probe()
        error = None if ok else "health probe answered 5xx"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        ok, error = False, f"health probe: {type(exc).__name__}: {exc}"
    now = time.monotonic()
    if ok:
        state.consecutive_successes += 1
        if state.healthy:
            state.consecutive_failures = 0
        elif state.consecutive_successes >= cfg.success_threshold:
            state.healthy = True
            state.consecutive_failures = 0
            state.backoff_s = 0.0
            state.last_error = None
            log.info("backend %s healthy again", state.name)
            await router.refresh(state)
        state.next_check = now + cfg.interval_s
    else:
        state.last_error = error
        state.consecutive_successes = 0
        state.consecutive_failures += 1
        if state.healthy and state.consecutive_failures >= cfg.fail_threshold:
            state.healthy = False
            log.warning("backend %s unhealthy: %s", state.name, error)
        if state.healthy:
            state.next_check = now + cfg.interval_s
        else:
            state.backoff_s = min(cfg.max_backoff_s, max(cfg.interval_s, state.backoff_s * 2))
            state.next_check = now + state.backoff_s
    router.metrics.backend_healthy.labels(state.name).set(1 if state.healthy else 0)
    router.scheduler.kick()
    return ok


async def health_loop(router: Router) -> None:
    while True:
        now = time.monotonic()
        due = [s for s in list(router.fleet.backends.values()) if now >= s.next_check]
        if due:
            await asyncio.gather(*(check_backend(router, s) for s in due))
        await asyncio.sleep(min(0.25, router.config.health.interval_s))


async def refresh_loop(router: Router) -> None:
    """Poll residency on a short interval; unload models whose router-kept keep_alive ran out."""
    while True:
        healthy = [s for s in list(router.fleet.backends.values()) if s.healthy]
        await asyncio.gather(*(router.refresh(s) for s in healthy))
        await expire_keep_alive(router)
        router.fleet.forget_removed()
        await asyncio.sleep(router.config.refresh_interval_s)


async def expire_keep_alive(router: Router) -> None:
    now = time.monotonic()
    for state in list(router.fleet.backends.values()):
        for ms in list(state.models.values()):
            if ms.unload_at is not None and ms.unload_at <= now and ms.in_flight == 0:
                ms.unload_at = None
                if ms.status == "loaded":
                    ms.status = "cold"  # first, so no request is routed to it meanwhile
                    await router.unload(state.name, ms.model)


async def run_forever(loop: Callable[[], Awaitable[None]], name: str) -> None:
    """Keep a background loop alive across unexpected errors (logged, retried in 1 s)."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s loop failed; restarting", name)
            await asyncio.sleep(1.0)
