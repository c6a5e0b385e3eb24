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
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from modelfleet.router.core import Router
from modelfleet.router.state import BackendState, ErrorRate, Outcome

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
    for backend, model in router.scheduler.books.expire_keep_alive(time.monotonic()):
        await router.unload(backend, model)


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


# -- the error-rate rule ------------------------------------------------------------------
#
# A probe only asks "is the process up?". A backend that answers its probe but fails real
# requests (500 on everything, accepts and never answers) is caught by the rate of bad
# outcomes across many *different* requests: the same poisoned request sent again and again
# counts once, and answered 5xx only count when the backend fails clearly more often than
# its peers (a request that breaks every backend is the request's fault, not theirs).


# What llama-server answers with a 500 when a request asks for what it was not started with
# or a field has the wrong type (measured on the cached build, tests/router/
# test_backend_refusals.py): the request's fault, answered 400 (clients retry a 500). Counted,
# five such requests ejected the model's only backend.
REFUSED_REQUEST = re.compile(
    r"requires --jinja flag|input is not supported|^Unknown reasoning format|^\[json\.exception\."
)
NOT_IMPLEMENTED = 501  # not started with that API (llama-server without --embeddings)


def answered_status(status: int, message: str) -> int:
    """The status an answered error goes back to the client with: its own, but 400 for a
    500 that is one of llama-server's refusals (``REFUSED_REQUEST``)."""
    return 400 if status >= 500 and REFUSED_REQUEST.search(message) else status


def backend_at_fault(status: int) -> bool:
    """Whether an answered error (after ``answered_status``) counts against the backend: a
    5xx but 501, which says the backend was not started with that API."""
    return status >= 500 and status != NOT_IMPLEMENTED


def request_key(body: bytes | dict[str, Any]) -> str:
    """Identifies a request's content, so one poisoned request repeated counts once."""
    raw = body if isinstance(body, bytes) else json.dumps(body, sort_keys=True).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def note_outcome(
    router: Router,
    state: BackendState,
    *,
    bad: bool,
    transport: bool = False,
    key: str | None = None,
) -> None:
    """Record one request's outcome on ``state``; eject it when the error-rate rule fires."""
    cfg = router.config.health
    now = time.monotonic()
    rate = router.error_rates.setdefault(state.name, ErrorRate())
    rate.outcomes.append(Outcome(now, bad, transport, key))
    rate.trim(now, cfg.error_rate_window_s, cfg.error_rate_requests)
    if bad and state.healthy:
        reason = _rate_verdict(router, state.name, rate, now)
        if reason:
            eject(router, state, reason)


def _rate_verdict(router: Router, name: str, rate: ErrorRate, now: float) -> str | None:
    cfg = router.config.health
    outcomes = rate.outcomes
    bad = [o for o in outcomes if o.bad]
    transport = sum(o.transport for o in bad)
    distinct = transport + len({o.key for o in bad if not o.transport})
    share = len(bad) / len(outcomes)
    if distinct < cfg.error_rate_min_errors or share < cfg.error_rate_threshold:
        return None
    if transport < cfg.error_rate_min_errors:
        # the answered 5xx tipped it: only the backend's fault if its peers do clearly better
        own = rate.answered_5xx_share() or 0.0
        since = now - cfg.error_rate_window_s
        peer_answered = [
            o
            for peer, other in router.error_rates.items()
            if peer != name
            for o in other.outcomes
            if not o.transport and o.at >= since
        ]
        if peer_answered:
            peer_share = sum(o.bad for o in peer_answered) / len(peer_answered)
            if peer_share * 2 > own:
                return None
    return (
        f"error rate: {len(bad)} of {len(outcomes)} requests failed in the last "
        f"{cfg.error_rate_window_s:g}s ({distinct} different requests, {transport} transport)"
    )


def transport_failure(router: Router, state: BackendState, kind: str) -> None:
    """Connect error, timeout, cut stream, gateway error: always counts against the backend.

    ``fail_threshold`` in a row eject it (a good probe in between resets the count, so the
    error-rate rule is what catches a backend that keeps timing out behind a live probe).
    """
    now = time.monotonic()
    state.record_failure(now, kind)  # the policy's error score
    state.consecutive_successes = 0
    state.consecutive_failures += 1
    router.metrics.backend_failures.labels(state.name, kind).inc()
    threshold = router.config.health.fail_threshold
    if state.healthy and state.consecutive_failures >= threshold:
        eject(router, state, f"{state.consecutive_failures} failures in a row (last: {kind})")
    note_outcome(router, state, bad=True, transport=True)


def eject(router: Router, state: BackendState, reason: str) -> None:
    """Take a backend out of rotation until its probe answers again (doubling backoff)."""
    cfg = router.config.health
    now = time.monotonic()
    rate = router.error_rates.setdefault(state.name, ErrorRate())
    recent = now - rate.last_ejected < cfg.error_rate_window_s
    rate.ejections = rate.ejections + 1 if recent else 1
    rate.last_ejected = now
    state.healthy = False
    state.consecutive_successes = 0
    state.last_error = reason
    state.backoff_s = min(cfg.max_backoff_s, cfg.interval_s * 2 ** (rate.ejections - 1))
    state.next_check = now + state.backoff_s
    router.metrics.backend_healthy.labels(state.name).set(0)
    log.warning("backend %s ejected: %s", state.name, reason)
    router.scheduler.kick()
