"""Soft state shared by router replicas through Redis (``shared_state`` in router.yaml).

Several routers can front one fleet. The backends stay the source of truth (every replica
still polls them); Redis only carries what a replica would otherwise learn too late:

* a **load lease** per model, ``modelfleet:lease:load:<model>`` =
  ``<replica>:<backend>:<token>``, taken with ``SET NX PX`` before a cold load's evictions
  are sent, renewed while the load runs and released (compare-and-delete) when it ends or
  fails. A replica that loses the race sends nothing and joins the winner's load;
* an **event stream** ``modelfleet:events`` (``XADD MAXLEN ~``) of loads, finished loads,
  evictions and drains, so the other replicas know within milliseconds, not at their next
  poll. A replica ignores its own events;
* **admin state**, the hash ``modelfleet:admin`` (``drained:<backend>`` = ``1`` | ``0``),
  read whenever a replica (re)connects, so a drain through any replica holds for all.

Redis is never in charge: every call in the request path is bounded by ``timeout_ms`` and
skipped outright while Redis is away ("degraded"), when each replica serves alone with its
own per-process coalescing, as a single router does. ``run`` (in the app's ``cleanup_ctx``)
reconnects with backoff and re-reads the admin state when Redis is back.

Why a stream rather than pub/sub: both reach the other replicas in about a millisecond, but
a stream entry read from a known id is never lost while the listener reconnects between two
blocking reads, and ``XREVRANGE modelfleet:events + - COUNT 20`` shows an operator (and the
tests) what the replicas told each other. ``MAXLEN ~`` keeps it bounded.

Example::

    shared = SharedState(config.shared_state, books, kick, spawn, gauge)
    claim = await shared.claim_load("llama3:8b", "gpu-01")  # "won" | "lost" | "alone"
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import redis.asyncio as redis
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from modelfleet.router.config import SharedStateConfig

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from modelfleet.router.bookkeeping import Bookkeeping
    from modelfleet.router.state import BackendState, FleetState

log = logging.getLogger("modelfleet.router.shared")

LEASE_PREFIX = "modelfleet:lease:load:"
EVENTS_KEY = "modelfleet:events"
ADMIN_KEY = "modelfleet:admin"
EVENTS_MAXLEN = 10_000
EVENT_KINDS = ("load", "loaded", "load-failed", "evict", "drain", "undrain", "pin", "unpin")
LISTEN_BLOCK_MS = 1000  # the listener's XREAD BLOCK; it notices a dead Redis within this
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0

# only the holder may renew or release a lease (its token is in the value); a renewal
# that finds no lease at all (Redis restarted empty, or it ran out while Redis was away)
# takes it again: the load goes on, and the other replicas must keep joining it
_RENEW = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
if not held then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

Mode = Literal["connected", "degraded", "off"]
EventKind = Literal["load", "loaded", "load-failed", "evict", "drain", "undrain", "pin", "unpin"]


def _supports_set_nx_get(version: str) -> bool:
    """``SET key value NX GET`` (how a claim learns who holds a lease) came with Redis 7.0.

    Example::

        [_supports_set_nx_get(v) for v in ("7.0.15", "6.2.14", "8.0.2", "")]
        # [True, False, True, True]
    """
    major = version.split(".")[0]
    return not major.isdigit() or int(major) >= 7  # a server that does not say: let it try


def pin_field(backend: str, model: str) -> str:
    """The admin hash's field of a pin: ``pinned:<backend>/<model>`` (a backend name has no
    ``/``; a model name may)."""
    return f"pinned:{backend}/{model}"


def parse_admin_field(field: str) -> tuple[str, str, str]:
    """``drained:<backend>`` or ``pinned:<backend>/<model>`` -> (kind, backend, model)."""
    kind, _, rest = field.partition(":")
    if kind == "pinned":
        backend, _, model = rest.partition("/")
        return kind, backend, model
    return kind, rest, ""


class Unavailable(Exception):
    """Redis did not answer in time (or is known to be away): go on alone."""


@dataclass(frozen=True)
class Holder:
    """Who holds a load lease: ``<replica>:<backend>:<token>`` (a backend name may hold ':')."""

    replica: str
    backend: str
    token: str

    @classmethod
    def parse(cls, value: str) -> Holder | None:
        replica, _, rest = value.partition(":")
        backend, _, token = rest.rpartition(":")
        return cls(replica, backend, token) if replica and backend and token else None

    def value(self) -> str:
        return f"{self.replica}:{self.backend}:{self.token}"


@dataclass(frozen=True)
class Claim:
    """The answer to :meth:`SharedState.claim_load`: ``won`` (load it, then ``release_load``
    with ``token``), ``lost`` (``holder`` loads it: join that load) or ``alone`` (Redis did
    not answer: load it as a single router would)."""

    outcome: Literal["won", "lost", "alone"]
    holder: Holder | None = None
    token: str = ""


class SharedState:
    def __init__(
        self,
        config: SharedStateConfig,
        books: Bookkeeping,
        kick: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        gauge: Gauge,
    ) -> None:
        """``books``: the router's bookkeeping, which remote events go through; ``kick``: hand
        queued requests out after a change; ``spawn``: run in the background; ``gauge``:
        modelfleet_shared_state_connected."""
        self.config = config
        self.books = books
        self.fleet: FleetState = books.fleet
        self.kick = kick
        self.spawn = spawn
        self.gauge = gauge
        self.replica = config.replica
        self.timeout_s = config.timeout_ms / 1000
        self.connected = False
        self.last_error: str | None = None
        self.events_seen = 0
        self.joined = asyncio.Event()  # set once the first connection read the admin state
        self.reconnects = 0
        self._password = SecretStr(config.password() or "")
        self._held: dict[str, tuple[str, asyncio.Task[None]]] = {}  # model -> token, renewer
        self._pending_admin: dict[str, str] = {}  # admin changes made while Redis was away
        # (backend, model) another replica is loading -> when to stop believing it: the
        # holder re-announces its load at every renewal, so a dead holder's mark runs out
        # when its lease does
        self._remote_loads: dict[tuple[str, str], float] = {}
        self.client = self._client(self.timeout_s)
        # the listener blocks in XREAD: its own connection, with room for the block
        self.listener = self._client(LISTEN_BLOCK_MS / 1000 + 2.0)
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def _client(self, socket_timeout_s: float) -> redis.Redis:
        return redis.Redis.from_url(
            self.config.url,
            password=self._password.get_secret_value() or None,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=max(self.timeout_s, 0.5),
            retry=Retry(NoBackoff(), 0),  # a failed call fails now; the listener reconnects
            decode_responses=True,
        )

    def __repr__(self) -> str:
        return f"SharedState(url={self.config.url!r}, replica={self.replica!r}, mode={self.mode!r})"

    @property
    def mode(self) -> Mode:
        return "connected" if self.connected else "degraded"

    def snapshot(self) -> dict[str, Any]:
        """For /admin/state and the dashboard (no password: it is not in the URL)."""
        return {
            "mode": self.mode,
            "replica": self.replica,
            "url": self.config.url,
            "last_error": self.last_error,
            "events_seen": self.events_seen,
            "reconnects": self.reconnects,
            "leases_held": sorted(self._held),
        }

    # -- the request path: every call bounded by timeout_ms, skipped while degraded --------

    async def _bounded(self, call: Callable[[], Any]) -> Any:
        """``await call()`` within timeout_ms (redis-py's stubs type async replies loosely)."""
        if not self.connected:
            raise Unavailable("degraded")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._lost(exc)
            raise Unavailable(self.last_error) from None

    async def lease_holder(self, model: str) -> Holder | None:
        """Who is loading ``model`` right now, if anyone (the cheap check before deciding)."""
        try:
            value = await self._bounded(lambda: self.client.get(LEASE_PREFIX + model))
        except Unavailable:
            return None
        return Holder.parse(value) if isinstance(value, str) else None

    async def claim_load(self, model: str, backend: str) -> Claim:
        """Take the load lease for ``model`` (to load on ``backend``), before any eviction."""
        mine = Holder(self.replica, backend, secrets.token_hex(8))
        try:
            old = await self._bounded(
                lambda: self.client.set(
                    LEASE_PREFIX + model,
                    mine.value(),
                    nx=True,
                    px=self.config.lease_ttl_ms,
                    get=True,  # with NX: Redis >= 7.0 answers the holder when we lose
                )
            )
        except Unavailable:
            return Claim("alone")
        if old is not None:
            holder = Holder.parse(str(old))
            return Claim("lost", holder) if holder else Claim("alone")
        renewer = asyncio.create_task(self._keep(model, backend, mine.value()))
        self._held[model] = (mine.token, renewer)
        self.publish("load", backend, model)
        return Claim("won", mine, mine.token)

    def release_load(self, model: str, backend: str, token: str, ok: bool) -> None:
        """The load ``token`` was for is over (``ok``: the backend answered); in the background."""
        held = self._held.get(model)
        if held is None or held[0] != token:
            return
        del self._held[model]
        held[1].cancel()
        key, value = LEASE_PREFIX + model, Holder(self.replica, backend, token).value()
        kind: EventKind = "loaded" if ok else "load-failed"

        async def release() -> None:
            with contextlib.suppress(Unavailable):  # else it expires within lease_ttl_ms
                await self._bounded(lambda: self._release(keys=[key], args=[value]))
            await self._publish(kind, backend, model)

        self.spawn(release())

    async def _keep(self, model: str, backend: str, value: str) -> None:
        """Renew a held lease every third of its lifetime until released (or lost), and
        say again that the load goes on."""
        ttl = self.config.lease_ttl_ms
        while True:
            await asyncio.sleep(ttl / 3000)
            try:
                kept = await self._bounded(
                    lambda: self._renew(keys=[LEASE_PREFIX + model], args=[value, ttl])
                )
            except Unavailable:
                continue  # the load goes on regardless; the lease is only a courtesy
            if not kept:
                log.warning("load lease for %s taken by another replica mid-load", model)
                return
            await self._publish("load", backend, model)

    def mark_remote_load(self, backend: BackendState, model: str) -> None:
        """Another replica loads ``model`` on ``backend``: join it, for one lease lifetime
        unless it is announced again (or ends)."""
        now = time.monotonic()
        self.books.load_elsewhere(backend, model, now)
        self._remote_loads[(backend.name, model)] = now + self.config.lease_ttl_ms / 1000

    def _sweep(self) -> None:
        """Forget remote loads whose holder went quiet (it died, or Redis went away)."""
        now, swept = time.monotonic(), False
        for (name, model), until in list(self._remote_loads.items()):
            if until > now:
                continue
            del self._remote_loads[(name, model)]
            state = self.fleet.backends.get(name)
            ms = state.models.get(model) if state else None
            if state and ms and ms.status == "loading" and ms.in_flight == 0:
                self.books.unloaded(state, model, now)
                swept = True
        if swept:
            self.kick()

    def publish(self, kind: EventKind, backend: str, model: str = "") -> None:
        """Tell the other replicas, in the background (never awaited by a request)."""
        if self.connected:
            self.spawn(self._publish(kind, backend, model))

    async def _publish(self, kind: EventKind, backend: str, model: str = "") -> None:
        fields = {"replica": self.replica, "kind": kind, "backend": backend, "model": model}
        with contextlib.suppress(Unavailable):  # soft state: the others' polls catch up
            await self._bounded(
                lambda: self.client.xadd(
                    EVENTS_KEY,
                    fields,  # type: ignore[arg-type]  # redis-py's stubs want bytes keys
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )
            )

    # -- admin state ------------------------------------------------------------------------

    async def set_drained(self, backend: str, drained: bool) -> bool:
        """Share a drain (or undrain); False when Redis is away (it is shared on reconnect)."""
        kind: EventKind = "drain" if drained else "undrain"
        return await self._set_admin(f"drained:{backend}", drained, kind, backend)

    async def set_pinned(self, backend: str, model: str, pinned: bool) -> bool:
        """Share a pin (``keep_alive < 0`` on a backend whose keep-alive the router keeps) or
        its end, like a drain: False when Redis is away (it is shared on reconnect)."""
        kind: EventKind = "pin" if pinned else "unpin"
        return await self._set_admin(pin_field(backend, model), pinned, kind, backend, model)

    async def _set_admin(
        self, field: str, on: bool, kind: EventKind, backend: str, model: str = ""
    ) -> bool:
        """Write one admin field and announce it; kept for the next reconnect if Redis is away."""
        value = "1" if on else "0"
        self._pending_admin[field] = value
        try:
            await self._bounded(lambda: self.client.hset(ADMIN_KEY, field, value))
        except Unavailable:
            return False
        self._pending_admin.pop(field, None)
        await self._publish(kind, backend, model)
        return True

    def _apply_admin(self, fields: dict[str, str]) -> None:
        for field, value in fields.items():
            kind, backend, model = parse_admin_field(field)
            state = self.fleet.backends.get(backend)
            if kind == "drained" and state is not None:
                state.drained = value == "1"
            elif kind == "pinned" and state is not None and model:
                state.model(model).pinned = value == "1"
        self.kick()

    # -- connection and listener (the app's cleanup_ctx runs this) --------------------------

    async def run(self) -> None:
        """Connect, read admin state, follow the event stream; on any failure degrade, back
        off (0.1 s doubling to 5 s) and start over. Runs until cancelled."""
        backoff = BACKOFF_MIN_S
        me = asyncio.current_task()
        while True:
            try:
                last_id = await self._join()
                backoff = BACKOFF_MIN_S
                await self._listen(last_id)
            except (RedisError, OSError, TimeoutError, Unavailable) as exc:
                if me is not None and me.cancelling():
                    # our cancel came back as a connection error (the client library broke
                    # the connection it was cut off in): stop, or shutdown waits forever
                    raise asyncio.CancelledError from exc
                self._lost(exc)
            self._sweep()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _join(self) -> str:
        """(Re)connect: share admin changes made meanwhile, then read everyone's."""
        client = self.listener
        await client.ping()
        version = str((await client.info("server")).get("redis_version", ""))
        if not _supports_set_nx_get(version):
            # every claim would fail as a syntax error, read as "Redis lost": say why, once
            why = f"Redis {version} is too old: load leases need 7.0 or later (SET NX GET)"
            if self.last_error != why:
                log.error("shared state: %s; serving alone", why)
            raise Unavailable(why)
        if self._pending_admin:  # ours are newer than what Redis holds: share, announce
            pending = dict(self._pending_admin)
            await client.hset(ADMIN_KEY, mapping=pending)  # type: ignore[misc]
            for field, value in pending.items():
                what, backend, model = parse_admin_field(field)
                kinds = ("pin", "unpin") if what == "pinned" else ("drain", "undrain")
                kind = kinds[0] if value == "1" else kinds[1]
                fields = {"replica": self.replica, "kind": kind, "backend": backend, "model": model}
                await client.xadd(EVENTS_KEY, fields, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
                self._pending_admin.pop(field, None)
        newest = await client.xrevrange(EVENTS_KEY, count=1)
        last_id = str(newest[0][0]) if newest else "0-0"
        self._apply_admin(await client.hgetall(ADMIN_KEY))  # type: ignore[misc]
        if not self.connected:
            again = self.joined.is_set()
            self.reconnects += again
            log.log(
                logging.WARNING if again else logging.INFO,
                "shared state: %s Redis as replica %s",
                "reconnected to" if again else "connected to",
                self.replica,
            )
        self.connected = True
        self.last_error = None
        self._gauge()
        self.joined.set()
        return last_id

    async def _listen(self, last_id: str) -> None:
        while self.connected:
            reply = await self.listener.xread(
                {EVENTS_KEY: last_id}, count=200, block=LISTEN_BLOCK_MS
            )
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    self._apply_event(fields)
            self._sweep()
        raise Unavailable(self.last_error or "a call failed")

    def _apply_event(self, fields: dict[str, str]) -> None:
        if fields.get("replica") == self.replica:
            return  # our own decision, already in our bookkeeping
        self.events_seen += 1
        kind, model = fields.get("kind"), fields.get("model", "")
        state = self.fleet.backends.get(fields.get("backend", ""))
        if state is None:
            return
        books, now = self.books, time.monotonic()
        if kind == "drain" or kind == "undrain":
            state.drained = kind == "drain"
        elif (kind == "pin" or kind == "unpin") and model:
            state.model(model).pinned = kind == "pin"
        elif kind == "load" and model:
            self.mark_remote_load(state, model)
        elif kind == "loaded" and model:
            self._remote_loads.pop((state.name, model), None)
            if state.model(model).status != "loaded":
                books.loaded(state, model, now, learn=False)
        elif kind in ("load-failed", "evict") and model:
            self._remote_loads.pop((state.name, model), None)
            ms = state.model(model)
            if ms.in_flight == 0 and (kind == "evict" or ms.status == "loading"):
                books.unloaded(state, model, now)
        self.kick()

    def _lost(self, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, Unavailable):
            detail = str(exc)  # our own words (a Redis too old), not a lost connection
        if self.connected:
            log.warning("shared state: Redis unreachable, serving alone (%s)", detail)
        self.connected = False
        self.last_error = detail
        self._gauge()

    def _gauge(self) -> None:
        self.gauge.set(1 if self.connected else 0)

    async def close(self) -> None:
        for _token, renewer in self._held.values():
            renewer.cancel()
        self.connected = False
        for client in (self.client, self.listener):
            # bounded: shutting down must not wait on a Redis that does not answer
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await client.aclose()
