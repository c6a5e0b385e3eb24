"""Binds requests to backends on the event loop; the bookkeeping itself is pure
(``router/bookkeeping.py``, which the simulator drives too).

``acquire`` hands the request to the bookkeeping; a ``serve`` or ``load`` decision takes a
slot at once, a ``wait`` parks the request in a bounded FIFO per model and the caller awaits
a future. Every change that could free capacity (a request ends, a load finishes, a refresh,
a drain) calls ``kick``, which hands waiting requests to the first backend that can take
them (late binding). A request that waits past the deadline gets ``QueueTimeout``; a full
queue gets ``QueueFull`` at once.

With replicas (``shared_state``, ``router/shared.py``) a load decision takes the model's
load lease before its evictions are sent: the claim runs in ``lease.ready``, which the
caller awaits before sending anything. A lost claim sends nothing: the bookkeeping moves
the request (and every local request that joined it meanwhile) onto the winner's load.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelfleet.router.bookkeeping import Bookkeeping, Lease, Ticket
from modelfleet.router.policy import Decision, Policy
from modelfleet.router.state import Decided, FleetState

if TYPE_CHECKING:
    from modelfleet.router.shared import SharedState

__all__ = ["Lease", "NoBackend", "QueueFull", "QueueTimeout", "RoutingError", "Scheduler"]


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


@dataclass(eq=False)
class _Waiter:
    ticket: Ticket
    future: asyncio.Future[Lease]


@dataclass(eq=False)
class _LoadClaim:
    """A load lease being claimed for (backend, model); ``leases``: the local requests bound
    there meanwhile, which go wherever the claim says."""

    task: asyncio.Future[None]
    leases: list[Lease] = field(default_factory=list)


Unload = Callable[[str, str], Awaitable[None]]  # (backend name, model)
OnDecision = Callable[[str, Decision], None]
OnLoad = Callable[[str, str, str], None]  # (backend, model, reason): a load really goes out


class Scheduler:
    """Drives :class:`router.bookkeeping.Bookkeeping` from the event loop: a queued request
    waits on a future, hold wake-ups are loop timers, evictions are unload calls."""

    def __init__(
        self,
        fleet: FleetState,
        policy: Policy,
        unload: Unload,
        on_decision: OnDecision | None = None,
        on_load: OnLoad | None = None,
    ) -> None:
        """``on_load`` hears of every load that is sent: a decision to load whose shared
        lease another replica holds joins that load instead and is not one."""
        self.fleet = fleet
        self.unload = unload
        self.on_decision = on_decision or (lambda model, decision: None)
        self.on_load = on_load or (lambda backend, model, reason: None)
        self.books = Bookkeeping(fleet, policy, self._record)
        self.waiters: dict[Ticket, _Waiter] = {}
        self._wakeups: set[float] = set()  # loop times of pending hold wake-ups
        self.shared: SharedState | None = None  # set by the router when replicas share state
        self._claims: dict[tuple[str, str], _LoadClaim] = {}  # (backend, model) being claimed
        self._held: dict[Lease, str] = {}  # a lease whose load holds the shared lease: token

    @property
    def policy(self) -> Policy:
        return self.books.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self.books.policy = policy

    # -- acquiring and releasing ------------------------------------------------------------

    async def acquire(
        self, model: str, exclude: frozenset[str] = frozenset(), attempt: int = 0
    ) -> Lease:
        cfg = self.fleet.config.queue
        now = time.monotonic()
        ticket = Ticket(model, now, exclude, attempt)
        if self.shared is not None and self.shared.connected and self._cold_here(model):
            await self._learn_remote_load(model)
            now = time.monotonic()
        arrival = self.books.arrive(ticket, now, limit=cfg.max_per_model, explain=True)
        self._arm_wakeups()
        if arrival.outcome == "bound":
            assert arrival.lease is not None
            return self._start(arrival.lease)
        if arrival.outcome == "rejected":
            raise NoBackend(f"no healthy backend can serve model {model!r}")
        wait_s = arrival.decision.wait_s if arrival.decision else 0.0
        retry_after = max(cfg.retry_after_s, math.ceil(wait_s))
        if arrival.outcome == "full":
            error = QueueFull(
                f"queue for model {model!r} is full ({cfg.max_per_model} waiting)", retry_after
            )
            error.status = cfg.full_status
            raise error
        waiter = _Waiter(ticket, asyncio.get_running_loop().create_future())
        self.waiters[ticket] = waiter
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), cfg.deadline_s)
        except BaseException as exc:
            # timed out, rejected or the client went away: give back a slot bound meanwhile
            fut = waiter.future
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result(), ok=True, served=False)
            fut.cancel()
            self.books.withdraw(ticket)
            self.waiters.pop(ticket, None)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"model {model!r} waited {cfg.deadline_s:g}s for a free backend", retry_after
                ) from None
            raise

    def release(self, lease: Lease, ok: bool, served: bool = True) -> None:
        """Give the slot back. ``ok=False`` for a failure before the first byte."""
        if lease.released:
            return
        self._end_shared_load(lease, ok=lease.first_byte_at is not None)
        self.books.release(lease, time.monotonic(), ok, served)
        self.kick()

    def first_byte(self, lease: Lease) -> None:
        """The backend started answering: a load it was doing is over."""
        was_loading = lease.backend.model(lease.model).status == "loading"
        self.books.ready(lease, time.monotonic())
        self._end_shared_load(lease, ok=True)
        if was_loading:
            self.kick()

    # -- late binding -----------------------------------------------------------------------

    def kick(self) -> None:
        """Hand waiting requests to backends that can take them now."""
        for bound in self.books.kick(time.monotonic()):
            waiter = self.waiters.pop(bound.ticket, None)
            if bound.lease is None:
                if waiter is not None and not waiter.future.done():
                    waiter.future.set_exception(
                        NoBackend(f"no healthy backend can serve model {bound.ticket.model!r}")
                    )
                continue
            lease = self._start(bound.lease)
            if waiter is None or waiter.future.done():
                self.release(lease, ok=True, served=False)  # nobody waits for it any more
            else:
                waiter.future.set_result(lease)
        self._arm_wakeups()

    # -- internals --------------------------------------------------------------------------

    def _start(self, lease: Lease) -> Lease:
        key = (lease.backend.name, lease.model)
        claim = self._claims.get(key)
        if claim is not None and not claim.task.done():
            pass  # joins a load whose claim is under way: it goes wherever that one goes
        elif lease.decision.action == "load" and self.shared is not None and self.shared.connected:
            claim = self._claims[key] = _LoadClaim(asyncio.ensure_future(self._claim(lease)))
        else:
            if lease.decision.action == "load":
                self.on_load(lease.backend.name, lease.model, lease.decision.reason)
            if lease.decision.evict:
                lease.ready = asyncio.ensure_future(self._evict(lease.decision.evict))
            return lease
        # shielded: a client that goes away must not cancel the claim the others wait on
        claim.leases.append(lease)
        lease.ready = asyncio.shield(claim.task)
        return lease

    async def _claim(self, lease: Lease) -> None:
        """Take the model's shared load lease, then evict; or join the winner's load."""
        assert self.shared is not None
        key = (lease.backend.name, lease.model)
        try:
            claim = await self.shared.claim_load(lease.model, lease.backend.name)
            holder = claim.holder
            winner = self.fleet.backends.get(holder.backend) if holder else None
            if claim.outcome == "lost" and holder and holder.replica == self.shared.replica:
                winner = None  # our own load elsewhere (a scale-out): load here too
            if claim.outcome == "lost" and winner and winner.healthy and not winner.drained:
                now = time.monotonic()
                for joined in self._claims[key].leases:
                    if not joined.released:
                        self.books.join_elsewhere(joined, winner, now)
                self.kick()
                return
            if claim.outcome == "won":
                self._held[lease] = claim.token
        finally:
            self._claims.pop(key, None)
        if lease.released:  # its client went away while we claimed: no load, no evictions
            self._end_shared_load(lease, ok=False)
            return
        self.on_load(lease.backend.name, lease.model, lease.decision.reason)
        if lease.decision.evict:
            await self._evict(lease.decision.evict)

    def _end_shared_load(self, lease: Lease, ok: bool) -> None:
        token = self._held.pop(lease, None)
        if token is not None and self.shared is not None:
            self.shared.release_load(lease.model, lease.backend.name, token, ok)

    def _cold_here(self, model: str) -> bool:
        for state in self.fleet.backends.values():
            ms = state.models.get(model)
            if ms is not None and ms.status != "cold":
                return False
        return True

    async def _learn_remote_load(self, model: str) -> None:
        """A cold model: is another replica loading it? Then join that load (one bounded GET;
        the event stream usually told us already)."""
        assert self.shared is not None
        holder = await self.shared.lease_holder(model)
        if holder is None or holder.replica == self.shared.replica:
            return
        state = self.fleet.backends.get(holder.backend)
        if state is not None and state.healthy and not state.drained:
            self.shared.mark_remote_load(state, model)

    def _arm_wakeups(self) -> None:
        """A held request must be decided again when its hold runs out, even if nothing else
        happens by then (one timer per instant is enough)."""
        loop = asyncio.get_running_loop()
        offset = loop.time() - time.monotonic()
        for wake in self.books.take_wakeups():
            at = math.ceil((wake + offset) * 1000) / 1000
            if at not in self._wakeups:
                self._wakeups.add(at)
                loop.call_at(at, self._wake, at)

    def _wake(self, at: float) -> None:
        self._wakeups.discard(at)
        self.kick()

    async def _evict(self, victims: tuple[tuple[str, str], ...]) -> None:
        # the bookkeeping already marked them cold, so nobody is routed to them meanwhile
        await asyncio.gather(*(self.unload(b, m) for b, m in victims), return_exceptions=True)

    def _record(self, model: str, decision: Decision, queued: int) -> None:
        self.fleet.decisions.append(
            Decided(
                at=time.time(),
                model=model,
                action=decision.action,
                reason=decision.reason,
                backend=decision.backend,
                evict=list(decision.evict),
                queued=queued,
            )
        )
        self.on_decision(model, decision)
