"""Binds requests to backends: policy decisions, slot bookkeeping and the per-model queue.

``acquire`` asks the pure policy; a ``serve`` or ``load`` decision takes a slot at once, a
``wait`` parks the request in a bounded FIFO per model. Every change that could free
capacity (a request ends, a load finishes, a refresh, a drain) calls ``kick``, which hands
waiting requests to the first backend that can take them (late binding). A request that
waits past the deadline gets ``QueueTimeout``; a full queue gets ``QueueFull`` at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from router.policy import Decision, Policy, Request
from router.state import BackendState, Decided, FleetState


class RoutingError(Exception):
    status = 503

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoBackend(RoutingError):
    status = 503


class QueueFull(RoutingError):
    status = 429  # or 503, from queue.full_status


class QueueTimeout(RoutingError):
    status = 503


@dataclass
class Lease:
    """One slot on one backend, held by one request until ``release``."""

    backend: BackendState
    model: str
    decision: Decision
    queued_s: float = 0.0
    attempt: int = 0
    ready: asyncio.Task[None] | None = None  # evictions to finish before sending
    started: float = field(default_factory=time.monotonic)
    first_byte_at: float | None = None
    released: bool = False

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def loading(self) -> bool:
        return self.decision.action == "load" or self.decision.reason == "join-load"


@dataclass
class _Waiter:
    model: str
    exclude: frozenset[str]
    future: asyncio.Future[Lease]
    since: float


Unload = Callable[[str, str], Awaitable[None]]  # (backend name, model)
OnDecision = Callable[[str, Decision], None]


class Scheduler:
    def __init__(
        self,
        fleet: FleetState,
        policy: Policy,
        unload: Unload,
        on_decision: OnDecision | None = None,
    ) -> None:
        self.fleet = fleet
        self.policy = policy
        self.unload = unload
        self.on_decision = on_decision or (lambda model, decision: None)
        self.waiters: dict[str, deque[_Waiter]] = {}
        self._wakeups: set[float] = set()  # loop times of pending hold wake-ups

    # -- acquiring and releasing ------------------------------------------------------------

    async def acquire(
        self, model: str, exclude: frozenset[str] = frozenset(), attempt: int = 0
    ) -> Lease:
        cfg = self.fleet.config.queue
        queue = self.waiters.setdefault(model, deque())
        now = time.monotonic()
        if attempt == 0:
            self.fleet.demand.record(model, now)
        decision = self._decide(model, exclude, now)
        # FIFO: a newcomer binds at once only when nobody is waiting; a retry already waited
        if (not queue or attempt > 0) and decision.action in ("serve", "load"):
            return self._bind(model, decision, exclude, now, since=now, attempt=attempt)
        if decision.action == "reject":
            raise NoBackend(f"no healthy backend can serve model {model!r}")
        retry_after = max(cfg.retry_after_s, math.ceil(decision.wait_s))
        if len(queue) >= cfg.max_per_model:
            error = QueueFull(
                f"queue for model {model!r} is full ({cfg.max_per_model} waiting)", retry_after
            )
            error.status = cfg.full_status
            raise error
        waiter = _Waiter(model, exclude, asyncio.get_running_loop().create_future(), now)
        if attempt > 0:
            queue.appendleft(waiter)  # a retry keeps its place at the front
        else:
            queue.append(waiter)
        self._count_queue(model)
        if decision.action in ("serve", "load"):
            self.kick()  # capacity is free but others were first in line: serve them in order
        try:
            lease = await asyncio.wait_for(asyncio.shield(waiter.future), cfg.deadline_s)
        except BaseException as exc:
            # timed out, rejected or the client went away: give back a slot bound meanwhile
            fut = waiter.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result(), ok=True, served=False)
            fut.cancel()
            if waiter in queue:
                queue.remove(waiter)
                self._count_queue(model)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"model {model!r} waited {cfg.deadline_s:g}s for a free backend", retry_after
                ) from None
            raise
        lease.attempt = attempt
        return lease

    def release(self, lease: Lease, ok: bool, served: bool = True) -> None:
        """Give the slot back. ``ok=False`` for a failure before the first byte."""
        if lease.released:
            return
        lease.released = True
        now = time.monotonic()
        ms = lease.backend.model(lease.model)
        ms.in_flight = max(0, ms.in_flight - 1)
        ms.last_used = now
        if ok and served:
            # slot hold time once the model was ready: a request that waited for a load
            # would otherwise count the load as service
            self.fleet.observe_service(lease.model, now - max(lease.started, ms.ready_at))
        if not ok and ms.status == "loading" and lease.first_byte_at is None and ms.in_flight == 0:
            ms.status = "cold"  # the load we started did not happen; the refresher will tell
            ms.load_started = None
        self.fleet.forget_removed()
        self.kick()

    def first_byte(self, lease: Lease) -> None:
        """The backend started answering: a load it was doing is over."""
        now = time.monotonic()
        lease.first_byte_at = now
        ms = lease.backend.model(lease.model)
        if ms.status == "loading":
            if ms.load_started is not None and lease.decision.action == "load":
                self.fleet.observe_load(lease.model, now - ms.load_started)
            ms.status = "loaded"
            ms.load_started = None
            ms.ready_at = now
            self.kick()
        elif ms.status == "cold":
            ms.status = "loaded"

    # -- late binding -----------------------------------------------------------------------

    def kick(self) -> None:
        """Hand waiting requests to backends that can take them now."""
        now = time.monotonic()
        for model, queue in list(self.waiters.items()):
            while queue:
                waiter = queue[0]
                if waiter.future.done():
                    queue.popleft()
                    continue
                decision = self._decide(
                    model, waiter.exclude, now, record=False, waited_s=now - waiter.since
                )
                if decision.action == "reject":
                    queue.popleft()
                    waiter.future.set_exception(
                        NoBackend(f"no healthy backend can serve model {model!r}")
                    )
                    continue
                if decision.action == "wait":
                    break
                queue.popleft()
                waiter.future.set_result(
                    self._bind(model, decision, waiter.exclude, now, since=waiter.since)
                )
            self._count_queue(model)

    # -- internals --------------------------------------------------------------------------

    def _decide(
        self,
        model: str,
        exclude: frozenset[str],
        now: float,
        record: bool = True,
        waited_s: float = 0.0,
    ) -> Decision:
        request = Request(model, self.fleet.size_mb(model), waited_s)
        decision = self.policy.decide(self.fleet.view(now), request, now, exclude)
        if decision.reason == "hold-evict":
            self._wake_after(decision.wait_s)
        if record and decision.action in ("wait", "reject"):
            self._record(model, decision)
        return decision

    def _wake_after(self, delay_s: float) -> None:
        """A held request must be decided again when its hold runs out, even if nothing else
        happens by then (one timer per instant is enough)."""
        loop = asyncio.get_running_loop()
        at = math.ceil((loop.time() + delay_s) * 1000) / 1000
        if at not in self._wakeups:
            self._wakeups.add(at)
            loop.call_at(at, self._wake, at)

    def _wake(self, at: float) -> None:
        self._wakeups.discard(at)
        self.kick()

    def _bind(
        self,
        model: str,
        decision: Decision,
        exclude: frozenset[str],
        now: float,
        since: float,
        attempt: int = 0,
    ) -> Lease:
        assert decision.backend is not None
        backend = self.fleet.backends[decision.backend]
        ms = backend.model(model)
        ms.in_flight += 1
        ms.last_used = now
        if decision.action == "load":
            ms.status = "loading"
            ms.load_started = now
            ms.vram_mb = None
            ms.size_mb = ms.size_mb or self.fleet.size_mb(model)
        lease = Lease(backend, model, decision, queued_s=now - since, attempt=attempt)
        if decision.evict:
            lease.ready = asyncio.ensure_future(self._evict(decision.evict))
        self._record(model, decision)
        return lease

    async def _evict(self, victims: tuple[tuple[str, str], ...]) -> None:
        for backend_name, victim in victims:
            state = self.fleet.backends.get(backend_name)
            if state is None:
                continue
            ms = state.model(victim)
            ms.status = "cold"  # bookkeeping first, so nobody is routed to it meanwhile
            ms.vram_mb = None
        await asyncio.gather(*(self.unload(b, m) for b, m in victims), return_exceptions=True)

    def _record(self, model: str, decision: Decision) -> None:
        self.fleet.decisions.append(
            Decided(
                at=time.time(),
                model=model,
                action=decision.action,
                reason=decision.reason,
                backend=decision.backend,
                evict=list(decision.evict),
                queued=len(self.waiters.get(model, ())),
            )
        )
        self.on_decision(model, decision)

    def _count_queue(self, model: str) -> None:
        depth = sum(1 for w in self.waiters.get(model, ()) if not w.future.done())
        self.fleet.queued[model] = depth
        if not depth:
            self.fleet.queued.pop(model, None)
