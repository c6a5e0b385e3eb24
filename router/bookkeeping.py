"""The router's bookkeeping, shared by the aiohttp scheduler and the simulator. Pure: time is
passed in, nothing here awaits, sleeps or does I/O.

One :class:`Bookkeeping` owns what happens between a request's arrival and the end of its
slot: the per-model FIFO queue, late binding (a queued request is decided again whenever
capacity may have changed), slot accounting, the residency transitions the router causes
(``cold -> loading -> loaded -> cold``), keep-alive expiry and the load / service times it
learns. ``router/scheduler.py`` drives it from the event loop (and does the unloads and the
timers it asks for); ``deploy/simulate.py`` drives it from a virtual clock.

Example (time passed in)::

    books = Bookkeeping(FleetState(config), Policy())
    arrived = books.arrive(Ticket("llama3:8b", since=0.0), now=0.0)
    if arrived.lease:  # bound at once: send it to arrived.lease.backend
        books.ready(arrived.lease, now=4.2)  # first byte: a load it asked for is over
        books.release(arrived.lease, now=6.0, ok=True)
    for bound in books.kick(now=6.0):  # queued requests that can go now
        ...

Residency vocabulary (``router.state.ModelStatus``): ``cold`` (not in GPU memory),
``loading`` (a load is under way; requests sent there wait for it) and ``loaded``. Every
change the router itself makes goes through :meth:`Bookkeeping.set_status`; a backend's
own report (the refresher) goes through ``ModelState.observe``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from modelfleet.router.policy import TIMED_WAITS, Decision, Policy, Request
from modelfleet.router.state import BackendState, FleetState, ModelState, ModelStatus

OnDecision = Callable[[str, Decision, int], None]  # model, decision, queue depth


@dataclass(eq=False)
class Ticket:
    """One request asking for a slot: ``since`` is when it arrived (for waited time),
    ``exclude`` the backends that already failed it, ``attempt`` 0 for a first try."""

    model: str
    since: float
    exclude: frozenset[str] = frozenset()
    attempt: int = 0


@dataclass(eq=False)
class Lease:
    """One slot on one backend, held by one request until :meth:`Bookkeeping.release`."""

    backend: BackendState
    model: str
    decision: Decision
    started: float  # when it was bound
    queued_s: float = 0.0
    attempt: int = 0
    ready: Any = None  # the driver's handle on the evictions to finish before sending
    first_byte_at: float | None = None
    released: bool = False

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def loading(self) -> bool:
        return self.decision.action == "load" or self.decision.reason == "join-load"


@dataclass
class Arrival:
    """What :meth:`Bookkeeping.arrive` did with a ticket: bound it (``lease``), queued it,
    refused it (``rejected``: no backend can ever serve it; ``full``: its queue is full).
    ``decision`` is the policy's answer (None for a ticket queued behind others unasked)."""

    outcome: Literal["bound", "queued", "rejected", "full"]
    decision: Decision | None
    lease: Lease | None = None


@dataclass
class Bound:
    """A queued ticket that :meth:`Bookkeeping.kick` handed out: a lease, or (``lease`` None)
    a rejection because no backend can serve it any more."""

    ticket: Ticket
    lease: Lease | None
    decision: Decision


@dataclass
class Bookkeeping:
    fleet: FleetState
    policy: Policy
    on_decision: OnDecision = field(default=lambda model, decision, depth: None)
    queues: dict[str, deque[Ticket]] = field(default_factory=dict)
    # times at which a held request must be decided again (hold-evict, wait-loader), for the
    # driver's timer
    wakeups: list[float] = field(default_factory=list)

    # -- arrivals and late binding ----------------------------------------------------------

    def arrive(
        self, ticket: Ticket, now: float, limit: int | None = None, explain: bool = False
    ) -> Arrival:
        """A request arrives (or retries after a failure before its first byte).

        FIFO per model: a first try binds at once only when nobody of its model is waiting; a
        retry already waited and goes first. ``limit`` caps the queue (None: unbounded).
        ``explain``: ask the policy even for a ticket queued behind others (for Retry-After
        and the decision log); it changes nothing else."""
        model = ticket.model
        if ticket.attempt == 0:
            self.fleet.demand.record(model, now)
        queue = self.queues.get(model)
        behind = bool(queue) and ticket.attempt == 0
        decision = None
        if not behind or explain or (limit is not None and len(queue or ()) >= limit):
            decision = self._decide(ticket, now, hold_timer=not behind)
        if decision is not None and decision.action == "reject":
            self.on_decision(model, decision, len(queue or ()))
            return Arrival("rejected", decision)
        if decision is not None and not behind and decision.action in ("serve", "load"):
            return Arrival("bound", decision, self._bind(ticket, decision, now))
        if limit is not None and len(queue or ()) >= limit:
            return Arrival("full", decision)
        queue = self.queues.setdefault(model, deque())
        if ticket.attempt > 0:
            queue.appendleft(ticket)  # a retry keeps its place at the front
        else:
            queue.append(ticket)
        self._count(model)
        if decision is not None:
            self.on_decision(model, decision, len(queue))
        return Arrival("queued", decision)

    def kick(self, now: float) -> list[Bound]:
        """Hand queued tickets to backends that can take them now, oldest first per model."""
        handed: list[Bound] = []
        for model in list(self.queues):
            queue = self.queues[model]
            while queue:
                ticket = queue[0]
                decision = self._decide(ticket, now)
                if decision.action == "wait":
                    break
                queue.popleft()
                self._count(model)  # the next one is decided with the depth behind it
                if decision.action == "reject":
                    handed.append(Bound(ticket, None, decision))
                    continue
                handed.append(Bound(ticket, self._bind(ticket, decision, now), decision))
            self._count(model)
        return handed

    def withdraw(self, ticket: Ticket) -> None:
        """A queued ticket gave up (deadline, client gone)."""
        queue = self.queues.get(ticket.model)
        if queue is not None and ticket in queue:
            queue.remove(ticket)
            self._count(ticket.model)

    def take_wakeups(self) -> list[float]:
        wakeups, self.wakeups = self.wakeups, []
        return wakeups

    # -- slots ------------------------------------------------------------------------------

    def ready(self, lease: Lease, now: float) -> None:
        """The backend started answering ``lease``: a load it was doing is over."""
        lease.first_byte_at = now
        ms = lease.backend.model(lease.model)
        if ms.status == "loading":
            self.loaded(lease.backend, lease.model, now, learn=lease.decision.action == "load")
        elif ms.status == "cold":
            self.set_status(ms, "loaded", now)

    def release(self, lease: Lease, now: float, ok: bool, served: bool = True) -> None:
        """Give the slot back. ``ok=False``: it failed before the first byte."""
        if lease.released:
            return
        lease.released = True
        ms = lease.backend.model(lease.model)
        ms.in_flight = max(0, ms.in_flight - 1)
        ms.last_used = now
        if ok and served:
            # slot hold time once the model was ready: a request that waited for a load
            # would otherwise count the load as service
            self.fleet.observe_service(lease.model, now - max(lease.started, ms.ready_at))
        if ms.status == "loading" and lease.first_byte_at is None and ms.in_flight == 0:
            # the load it waited for is not known to have happened: the request failed, was
            # answered with an error (a 4xx, "not served") or never sent. Cold until a poll
            # says otherwise, rather than "loading" for as long as a load may take
            self.set_status(ms, "cold", now)
        self.fleet.forget_removed()

    # -- residency transitions --------------------------------------------------------------

    def set_status(self, ms: ModelState, status: ModelStatus, now: float) -> None:
        """The one place the router's own bookkeeping changes a model's residency."""
        ms.status = status
        ms.changed_at = now  # newer than any backend report already in flight
        if status == "loading":
            ms.load_started = now
            ms.vram_mb = None
        else:
            ms.load_started = None
        if status == "cold":
            ms.vram_mb = None

    def load_began(self, backend: BackendState, model: str, now: float) -> None:
        """The backend started the load it was asked for (a backend loads one model at a time,
        so a load can queue behind another). The router cannot see this and counts load time
        from when it sent the request; the simulator, which can, calls this."""
        ms = backend.model(model)
        if ms.status == "loading":
            ms.load_started = now

    def loaded(self, backend: BackendState, model: str, now: float, learn: bool = True) -> None:
        """A load finished; ``learn``: count its duration towards the model's load time."""
        ms = backend.model(model)
        if learn and ms.status == "loading" and ms.load_started is not None:
            self.fleet.observe_load(model, now - ms.load_started)
        self.set_status(ms, "loaded", now)
        ms.ready_at = now
        ms.last_used = now

    def unloaded(self, backend: BackendState, model: str, now: float) -> None:
        """The model left GPU memory: the router evicted it, or the backend dropped it."""
        self.set_status(backend.model(model), "cold", now)

    def load_elsewhere(self, backend: BackendState, model: str, now: float) -> None:
        """Another router replica is loading ``model`` on ``backend`` (``router/shared.py``):
        mark it loading here too, so requests join that load rather than start their own."""
        ms = backend.model(model)
        if ms.status == "cold":
            self.set_status(ms, "loading", now)
            ms.size_mb = ms.size_mb or self.fleet.size_mb(model)

    def join_elsewhere(self, lease: Lease, backend: BackendState, now: float) -> None:
        """Another replica won the load ``lease`` was bound for, on ``backend`` (maybe the same
        one). Nothing was sent yet: undo what the bind did (its victims are still loaded, the
        model is not loading where we meant to load it) and join the winner's load instead."""
        ms = lease.backend.model(lease.model)
        ms.in_flight = max(0, ms.in_flight - 1)
        for victim_backend, victim in lease.decision.evict:
            state = self.fleet.backends.get(victim_backend)
            if state is not None and state.model(victim).status == "cold":
                self.set_status(state.model(victim), "loaded", now)
        self.load_elsewhere(backend, lease.model, now)
        if backend is not lease.backend and ms.status == "loading" and ms.in_flight == 0:
            self.set_status(ms, "cold", now)
        backend.model(lease.model).in_flight += 1
        lease.backend = backend
        lease.decision = Decision("serve", "join-load", backend.name)
        self.on_decision(lease.model, lease.decision, len(self.queues.get(lease.model, ())))

    def expire_keep_alive(self, now: float) -> list[tuple[str, str]]:
        """Idle models whose router-kept keep_alive ran out: marked cold here, first, so no
        request is routed to them meanwhile; the driver unloads the ``(backend, model)``s."""
        expired = []
        for state in list(self.fleet.backends.values()):
            for ms in list(state.models.values()):
                if ms.unload_at is not None and ms.unload_at <= now and ms.in_flight == 0:
                    ms.unload_at = None
                    if ms.status == "loaded":
                        self.set_status(ms, "cold", now)
                        expired.append((state.name, ms.model))
        return expired

    # -- internals --------------------------------------------------------------------------

    def _decide(self, ticket: Ticket, now: float, hold_timer: bool = True) -> Decision:
        request = Request(ticket.model, self.fleet.size_mb(ticket.model), now - ticket.since)
        decision = self.policy.decide(self.fleet.view(now), request, now, ticket.exclude)
        if decision.reason in TIMED_WAITS and hold_timer:
            self.wakeups.append(now + decision.wait_s)
        return decision

    def _bind(self, ticket: Ticket, decision: Decision, now: float) -> Lease:
        assert decision.backend is not None
        backend = self.fleet.backends[decision.backend]
        ms = backend.model(ticket.model)
        ms.in_flight += 1
        ms.last_used = now
        if decision.action == "load":
            self.set_status(ms, "loading", now)
            ms.size_mb = ms.size_mb or self.fleet.size_mb(ticket.model)
        for victim_backend, victim in decision.evict:
            # bookkeeping first, so nobody is routed to a victim while it is unloaded
            state = self.fleet.backends.get(victim_backend)
            if state is not None:
                self.unloaded(state, victim, now)
        lease = Lease(
            backend,
            ticket.model,
            decision,
            started=now,
            queued_s=now - ticket.since,
            attempt=ticket.attempt,
        )
        self.on_decision(ticket.model, decision, len(self.queues.get(ticket.model, ())))
        return lease

    def _count(self, model: str) -> None:
        depth = len(self.queues.get(model, ()))
        if depth:
            self.fleet.queued[model] = depth
        else:
            self.fleet.queued.pop(model, None)
            self.queues.pop(model, None)
