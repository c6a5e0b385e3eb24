"""Routing policy: which backend serves a request. Pure, so a simulator can replay it.

Nothing here does I/O or reads a clock: the router (``router/scheduler.py``) and the
benchmark's discrete-event simulator (``bench/``) both build a :class:`FleetView` snapshot,
pass the current time in, and act on the :class:`Decision` that comes back.

API (stable; the simulator depends on it)
-----------------------------------------

``Policy(params: PolicyParams = PolicyParams())``
    ``decide(fleet: FleetView, request: Request, now: float,
    exclude: frozenset[str] = frozenset()) -> Decision``

    ``request.waited_s`` is how long the request has been held already (for ``hold-evict``;
    the caller decides again by ``wait_s`` at the latest). ``exclude`` names backends that
    already failed this request (retry before the first byte goes elsewhere). ``now`` is
    seconds on any monotonic clock; it is only used to read demand and LRU ages, so a
    simulator passes its virtual time.

``DemandTracker(half_life_s=300.0)``
    ``record(model, now)`` on every request, ``rate(model, now)`` / ``rates(now)`` give
    requests per second with exponential decay. ``FleetView.demand`` takes ``rates(now)``.

Inputs (frozen dataclasses): :class:`FleetView` holds :class:`BackendView` s (each with
its :class:`Residency` list: models ``loaded`` or ``loading`` there), :class:`HostView` s
(VRAM shared by every backend on the host), demand, router queue depth, expected load
time and expected service time per model. A model absent from a backend's ``residents``
is cold there.

Output: :class:`Decision` with ``action``:

* ``"serve"``: send the request to ``backend`` now (the model is resident, or loading
  there and the backend will hold the request until the load finishes);
* ``"load"``: send it to ``backend``, which loads the model on demand, after unloading
  every ``(backend, model)`` in ``evict`` (all idle, all on the same host);
* ``"wait"``: keep it in the router's per-model queue and decide again when a slot frees
  or residency changes (late binding);
* ``"reject"``: no healthy, undrained backend can ever serve this model.

Decision order (``reason`` says which rule fired):

1. ``resident``: the model is in GPU memory (not spilled to CPU) with a free slot; the
   least busy such backend wins, recent failures counting as load so a fast-failing
   backend never looks idle.
2. ``join-load``: a load of this model is under way; send the request there (if it has a
   free slot) or wait for it (``wait-load``). One load per model fleet-wide.
3. The model is resident but every slot is busy: ``scale-out`` to a host that does not
   hold it yet only when the expected queue wait, on an *observed* service time, exceeds
   the model's load time, and only into free VRAM or where the requests it spares the queue
   (queued + demand x time saved) outweigh the victims' demand; else ``wait-slot``.
4. ``load-fits``: load where it fits in free VRAM (and under ``max_loaded``) without
   evicting anything; on the smallest host it fits on (the large ones are the only room
   for the large models), the emptiest of those.
5. ``resident-spilled``: a CPU-spilled copy with a free slot (slow, but no load).
6. ``load-evict``: load where eviction costs least: cost = sum of the evicted models'
   recent demand (req/s); ties go to the host with fewer seconds of loads under way, then
   fewer evicted MB, then more free VRAM. On each host the victims are the cheapest set of
   idle models that frees enough, so a load never evicts a model it did not need gone.
   ``hold-evict`` (a wait): when that cost exceeds the request model's own demand and some
   host busy now would offer cheaper room once idle, hold the request for up to
   ``max_hold_s`` from its arrival (never longer than its own load time) and decide again.
   "Busy" includes a model still loading: once loaded and done with the requests that
   asked for it, it is often the cheapest victim there is (a rare model, loaded for one).
   ``wait-loader`` (a wait): the chosen host is still loading another model, and a backend
   loads one at a time, so this load could not start yet anyway: the victims keep serving
   and the request is decided again when that load ends (up to ``max_hold_s`` from its
   arrival), instead of evicting now for a load that would sit in the backend's queue.
7. ``load-spill``: the model is larger than any host's VRAM; load where most fits.
8. ``wait-capacity``: every placement is blocked by models with requests in flight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

ResidencyState = Literal["loaded", "loading"]
Action = Literal["serve", "load", "wait", "reject"]
Reason = Literal[
    "hold-evict",
    "wait-loader",
    "resident",
    "join-load",
    "scale-out",
    "load-fits",
    "resident-spilled",
    "load-evict",
    "load-spill",
    "wait-load",
    "wait-slot",
    "wait-capacity",
    "no-backend",
]
# Waits that end by the clock as well as by a change: the caller decides again by ``wait_s``.
TIMED_WAITS: frozenset[Reason] = frozenset({"hold-evict", "wait-loader"})


@dataclass(frozen=True)
class Residency:
    """One model loaded (or loading) on one backend."""

    model: str
    state: ResidencyState = "loaded"
    size_mb: int = 0  # whole footprint (weights + KV cache); 0 = unknown
    vram_mb: int | None = None  # part of it in GPU memory; None = unknown (assume all)
    in_flight: int = 0
    slots: int = 1
    last_used: float = 0.0
    pinned: bool = False  # keep_alive < 0: never chosen for eviction

    @property
    def gpu_mb(self) -> int:
        return self.size_mb if self.vram_mb is None else self.vram_mb

    @property
    def spilled(self) -> bool:
        """Partly in system RAM (Ollama ``size_vram < size``): several times slower."""
        return self.vram_mb is not None and self.size_mb > 0 and self.vram_mb < self.size_mb

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.in_flight)


@dataclass(frozen=True)
class BackendView:
    name: str
    host: str
    serves: frozenset[str] | None = None  # models it can serve; None = any
    residents: tuple[Residency, ...] = ()
    healthy: bool = True
    drained: bool = False
    can_load: bool = True  # False: serves only what is resident (openai, single-model server)
    can_unload: bool = True
    max_loaded: int | None = None
    slots: int = 1  # slots a newly loaded model gets
    model_slots: Mapping[str, int] = field(default_factory=dict)  # per-model override
    error_score: float = 0.0  # recent passive failures; counts as extra load
    weight: float = 1.0

    def resident(self, model: str) -> Residency | None:
        for res in self.residents:
            if res.model == model:
                return res
        return None

    def can_serve(self, model: str) -> bool:
        return self.serves is None or model in self.serves


@dataclass(frozen=True)
class HostView:
    name: str
    vram_mb: int = 0  # 0 = unknown: never limits placement


@dataclass(frozen=True)
class FleetView:
    backends: tuple[BackendView, ...]
    hosts: Mapping[str, HostView] = field(default_factory=dict)
    demand: Mapping[str, float] = field(default_factory=dict)  # req/s per model
    queued: Mapping[str, int] = field(default_factory=dict)  # router queue depth per model
    load_s: Mapping[str, float] = field(default_factory=dict)  # expected load time
    service_s: Mapping[str, float] = field(default_factory=dict)  # expected slot hold time


@dataclass(frozen=True)
class Request:
    model: str
    size_mb: int = 0  # footprint once loaded (catalog weights + KV); 0 = unknown
    waited_s: float = 0.0  # how long it has been held in the router's queue so far


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    backend: str | None = None
    evict: tuple[tuple[str, str], ...] = ()  # (backend, model) to unload first
    cost: float = 0.0  # demand-weighted eviction cost
    wait_s: float = 0.0  # expected queue wait (for scale-out and Retry-After)


@dataclass(frozen=True)
class PolicyParams:
    headroom_mb: int = 0  # VRAM kept free on every host
    default_load_s: float = 10.0  # load time when none was observed yet
    default_service_s: float = 5.0  # slot hold time when none was observed yet
    scale_out: bool = True
    allow_spill: bool = True
    # Hold a cold request up to this long (and never longer than its own load takes) when the
    # cheapest eviction would lose more demand than the load brings (``hold-evict``), and at
    # most this long while the host it would evict on finishes another load (``wait-loader``);
    # 0 = never.
    # 20 s: fewer cold loads than no hold without the p99 TTFT that 30 s costs (the curve in
    # docs/benchmarks.md §2).
    max_hold_s: float = 20.0


@dataclass(frozen=True)
class _Placement:
    backend: BackendView
    evict: tuple[tuple[str, str], ...]
    cost: float
    evicted_mb: int
    free_after_mb: float
    spill: bool
    host_mb: float  # the host's VRAM; inf = unknown
    pending_s: float = 0.0  # expected time of the loads already under way on the host


class Policy:
    """The decision order in the module docstring, as one pure function ``decide``."""

    def __init__(self, params: PolicyParams | None = None) -> None:
        self.params = params or PolicyParams()

    def decide(
        self,
        fleet: FleetView,
        request: Request,
        now: float,
        exclude: frozenset[str] = frozenset(),
    ) -> Decision:
        model = request.model
        candidates = [
            b
            for b in fleet.backends
            if b.name not in exclude and b.healthy and not b.drained and b.can_serve(model)
        ]
        if not candidates:
            return Decision("reject", "no-backend")

        loaded = [(b, r) for b in candidates if (r := b.resident(model)) and r.state == "loaded"]
        loading = [(b, r) for b in candidates if (r := b.resident(model)) and r.state == "loading"]
        clean = [(b, r) for b, r in loaded if not r.spilled]

        # 1. resident, in GPU memory, with a free slot
        free = [(b, r) for b, r in clean if r.free_slots > 0]
        if free:
            backend, _ = min(free, key=lambda br: _busy_key(*br))
            return Decision("serve", "resident", backend.name)

        # 2. join a load already under way (one load per model fleet-wide)
        if loading:
            joinable = [(b, r) for b, r in loading if r.free_slots > 0]
            if joinable:
                backend, _ = min(joinable, key=lambda br: _busy_key(*br))
                return Decision("serve", "join-load", backend.name)
            return Decision("wait", "wait-load", loading[0][0].name)

        loadable = [b for b in candidates if b.can_load and b.resident(model) is None]

        # 3. resident but busy: scale out only when waiting would cost more than a load, on
        #    an observed service time, into free VRAM or where the queue time saved is worth
        #    more than what the eviction loses
        if clean:
            wait_s = self._expected_wait(fleet, model, [r for _, r in clean])
            load_s = self._load_s(fleet, model)
            observed = model in fleet.service_s
            if self.params.scale_out and observed and wait_s > load_s:
                holding_hosts = {b.host for b, _ in clean}
                elsewhere = [b for b in loadable if b.host not in holding_hosts]
                placement = self._best_placement(fleet, request, elsewhere, now, spill=False)
                if placement is not None and (
                    not placement.evict
                    or self._scale_out_gain(fleet, model, wait_s, load_s) > placement.cost
                ):
                    return _load(placement, "scale-out", wait_s)
            least_busy = min(clean, key=lambda br: _busy_key(*br))[0]
            return Decision("wait", "wait-slot", least_busy.name, wait_s=wait_s)

        # 4. load where it fits without evicting
        placements = [
            p
            for b in loadable
            if (p := self._placement(fleet, request, b, now)) is not None and not p.spill
        ]
        fits = [p for p in placements if not p.evict]
        if fits:
            return _load(min(fits, key=_fit_key), "load-fits")

        # 5. a CPU-spilled copy with a free slot beats evicting someone
        spilled_free = [(b, r) for b, r in loaded if r.free_slots > 0]
        if spilled_free:
            backend, _ = min(spilled_free, key=lambda br: _busy_key(*br))
            return Decision("serve", "resident-spilled", backend.name)

        # 6. load where eviction costs least; hold the request a bounded time when even the
        #    cheapest eviction loses more than the load gains (a busy host may free cheaper
        #    room meanwhile)
        if placements:
            best = min(placements, key=_placement_key)
            # never held longer than its own load would take: a hold at most doubles it
            hold_s = min(self.params.max_hold_s, self._load_s(fleet, model))
            remaining = hold_s - request.waited_s
            if remaining > _HOLD_EPSILON_S and best.cost > fleet.demand.get(model, 0.0):
                later = [
                    p
                    for b in loadable
                    if (p := self._placement(fleet, request, b, now, once_idle=True)) is not None
                    and not p.spill
                ]
                if min((p.cost for p in later), default=math.inf) < best.cost:
                    return Decision("wait", "hold-evict", best.backend.name, wait_s=remaining)
            # the host is still loading another model: evicting now would only empty the
            # victims' room for a load that cannot start before that one ends
            until_cap = self.params.max_hold_s - request.waited_s
            if best.evict and best.pending_s > 0 and until_cap > _HOLD_EPSILON_S:
                wait_s = min(best.pending_s, until_cap)
                return Decision("wait", "wait-loader", best.backend.name, wait_s=wait_s)
            return _load(best, "load-evict")

        if loaded:  # spilled and busy: wait for its slot
            backend = min(loaded, key=lambda br: _busy_key(*br))[0]
            wait_s = self._expected_wait(fleet, model, [r for _, r in loaded])
            return Decision("wait", "wait-slot", backend.name, wait_s=wait_s)

        # 7. too large for any host: load where the most of it fits. A host that could hold
        #    it whole is only busy now: wait for it (8) rather than run the model partly on
        #    a smaller host's CPU for as long as it stays loaded
        whole = any(self._holds_whole(fleet, request, b) for b in loadable)
        if self.params.allow_spill and not whole:
            spills = [
                p
                for b in loadable
                if (p := self._placement(fleet, request, b, now)) is not None and p.spill
            ]
            if spills:
                return _load(min(spills, key=_placement_key), "load-spill")

        # 8. every placement is blocked by busy models: wait for one to finish
        if loadable:
            return Decision("wait", "wait-capacity", loadable[0].name)
        return Decision("reject", "no-backend")

    # -- helpers ---------------------------------------------------------------------------

    def _load_s(self, fleet: FleetView, model: str) -> float:
        return fleet.load_s.get(model, self.params.default_load_s)

    def _holds_whole(self, fleet: FleetView, request: Request, backend: BackendView) -> bool:
        """Whether ``backend``'s host has the VRAM for the whole model once it is empty."""
        host_vram = fleet.hosts.get(backend.host, HostView(backend.host)).vram_mb
        return not host_vram or request.size_mb <= host_vram - self.params.headroom_mb

    def _scale_out_gain(self, fleet: FleetView, model: str, wait_s: float, load_s: float) -> float:
        """Requests a second copy would spare the queue's wait: those queued, and those that
        arrive in the time it saves."""
        return fleet.queued.get(model, 0) + fleet.demand.get(model, 0.0) * (wait_s - load_s)

    def _expected_wait(self, fleet: FleetView, model: str, copies: list[Residency]) -> float:
        slots = sum(r.slots for r in copies) or 1
        service = fleet.service_s.get(model, self.params.default_service_s)
        return (fleet.queued.get(model, 0) + 1) * service / slots

    def _best_placement(
        self,
        fleet: FleetView,
        request: Request,
        backends: Iterable[BackendView],
        now: float,
        spill: bool,
    ) -> _Placement | None:
        options = [
            p
            for b in backends
            if (p := self._placement(fleet, request, b, now)) is not None and p.spill == spill
        ]
        return min(options, key=_placement_key) if options else None

    def _placement(
        self,
        fleet: FleetView,
        request: Request,
        backend: BackendView,
        now: float,
        once_idle: bool = False,
    ) -> _Placement | None:
        """What loading ``request.model`` on ``backend`` would evict, or None if blocked.
        ``once_idle``: as if the models serving requests now, or still loading, were idle
        (what holding the request until they finish could offer)."""
        host_vram = fleet.hosts.get(backend.host, HostView(backend.host)).vram_mb
        on_host = [b for b in fleet.backends if b.host == backend.host]
        used = sum(r.gpu_mb for b in on_host for r in b.residents)
        need = request.size_mb
        usable = host_vram - self.params.headroom_mb
        spill = bool(host_vram) and need > usable
        free = math.inf if not host_vram else usable - used
        over_count = backend.max_loaded is not None and len(backend.residents) >= backend.max_loaded
        # loads already under way on this host: a backend loads one model at a time
        pending = sum(
            self._load_s(fleet, r.model)
            for b in on_host
            for r in b.residents
            if r.state == "loading"
        )
        if (spill or need <= free) and not over_count:
            return _Placement(
                backend, (), 0.0, 0, free - need, spill, host_vram or math.inf, pending
            )

        # idle, unpinned, fully loaded models on this host (``once_idle``: any unpinned one);
        # LRU first, so ties go to the oldest
        victims = sorted(
            (
                (b, r)
                for b in on_host
                if b.can_unload
                for r in b.residents
                if not r.pinned and (once_idle or (r.state == "loaded" and r.in_flight == 0))
            ),
            key=lambda br: (br[1].last_used, br[0].name, br[1].model),
        )
        shortfall = 0.0 if spill else need - free
        chosen = _cheapest_victims(
            victims, shortfall, fleet.demand, own=backend if over_count else None
        )
        if chosen is None:
            return None
        return _Placement(
            backend,
            tuple((b.name, r.model) for b, r in chosen.members),
            chosen.cost,
            chosen.freed_mb,
            free + chosen.freed_mb - need,
            spill,
            host_vram or math.inf,
            pending,
        )


_HOLD_EPSILON_S = 1e-3  # a hold that would end sooner is over (clock rounding)

_Victim = tuple[BackendView, Residency]


class _VictimSet(NamedTuple):
    cost: float  # req/s the evicted models were getting
    freed_mb: int
    members: tuple[_Victim, ...]

    def plus(self, victim: _Victim, demand: Mapping[str, float]) -> _VictimSet:
        _, res = victim
        cost = self.cost + demand.get(res.model, 0.0)
        return _VictimSet(cost, self.freed_mb + res.gpu_mb, (*self.members, victim))

    def key(self) -> tuple[float, int, int, float]:
        """Least demand, then fewest MB, then fewest models, then the least recently used."""
        newest = max((r.last_used for _, r in self.members), default=0.0)
        return (self.cost, self.freed_mb, len(self.members), newest)


# Above this many partial victim sets the search keeps only the cheapest (a guard for hosts
# with dozens of idle models; real hosts hold a handful, and the search is exact there).
_MAX_PARTIAL_SETS = 512


def _cheapest_victims(
    victims: list[_Victim],
    shortfall_mb: float,
    demand: Mapping[str, float],
    own: BackendView | None = None,
) -> _VictimSet | None:
    """The victim set that frees at least ``shortfall_mb`` at the least cost (the demand its
    models were getting), or None if no set frees enough. ``own``: the backend is at its
    ``max_loaded`` cap, so the set must include one of that backend's own models.

    "Cheapest first until it fits" would keep early small victims that a later, bigger one
    made unnecessary; this is the exact minimum instead.

    Example: 10 GB short, idle a (8 GB, 0.1 req/s), b (4 GB, 0.2) and c (12 GB, 0.25):
    cheapest-first evicts a and b (0.3 req/s); the cheapest set is c alone (0.25).
    """
    if own is None:
        return _cheapest_cover(victims, shortfall_mb, demand, _VictimSet(0.0, 0, ()))
    options = []
    for forced in (v for v in victims if v[0].name == own.name):
        rest = [v for v in victims if v is not forced]
        start = _VictimSet(0.0, 0, ()).plus(forced, demand)
        cover = _cheapest_cover(rest, shortfall_mb, demand, start)
        if cover is not None:
            options.append(cover)
    return min(options, key=_VictimSet.key, default=None)


def _cheapest_cover(
    victims: list[_Victim], shortfall_mb: float, demand: Mapping[str, float], start: _VictimSet
) -> _VictimSet | None:
    """Min-cost cover, ``start`` plus some of ``victims``: dynamic programming over partial
    sets, growing only those that no other set beats on both cost and MB freed."""
    if start.freed_mb >= shortfall_mb:
        return start
    best: _VictimSet | None = None
    partial = [start]
    for victim in victims:
        grown = [chosen.plus(victim, demand) for chosen in partial]
        for option in grown:
            if option.freed_mb >= shortfall_mb and (best is None or option.key() < best.key()):
                best = option
        limit = math.inf if best is None else best.cost  # growing never makes a set cheaper
        partial = _undominated(
            [c for c in partial + grown if c.freed_mb < shortfall_mb and c.cost <= limit]
        )
    return None if best is None else _without_unneeded(best, shortfall_mb, demand, start)


def _undominated(sets: list[_VictimSet]) -> list[_VictimSet]:
    """The sets worth growing: not a repeat (same cost and MB), and freeing more than every
    cheaper set. Equally cheap sets that free less stay: they may end in a cover of fewer MB."""
    keep: list[_VictimSet] = []
    freed_by_cheaper = freed_so_far = -1
    cost_now = -1.0
    for chosen in sorted(sets, key=lambda c: (c.cost, -c.freed_mb)):
        if chosen.cost != cost_now:
            cost_now, freed_by_cheaper = chosen.cost, freed_so_far
        repeat = bool(keep) and keep[-1][:2] == chosen[:2]
        if chosen.freed_mb > freed_by_cheaper and not repeat:
            keep.append(chosen)
        freed_so_far = max(freed_so_far, chosen.freed_mb)
    return keep[:_MAX_PARTIAL_SETS]


def _without_unneeded(
    chosen: _VictimSet, shortfall_mb: float, demand: Mapping[str, float], start: _VictimSet
) -> _VictimSet:
    """Leave out victims the rest of the set makes unnecessary, largest first. The exact
    search never leaves any; this guards the result once ``_MAX_PARTIAL_SETS`` cut it short."""
    kept = start
    extra = sorted(chosen.members[len(start.members) :], key=lambda v: -v[1].gpu_mb)
    slack = chosen.freed_mb - shortfall_mb
    for victim in extra:
        if victim[1].gpu_mb <= slack:
            slack -= victim[1].gpu_mb
        else:
            kept = kept.plus(victim, demand)
    return kept


def _busy_key(backend: BackendView, res: Residency) -> tuple[float, float, str]:
    load = (res.in_flight / max(res.slots, 1) + backend.error_score) / backend.weight
    return (load, -res.free_slots, backend.name)


def _placement_key(p: _Placement) -> tuple[float, float, int, float, float, str]:
    """Least demand evicted; among equally cheap hosts the one with the fewest seconds of
    loads already under way (this load would queue behind them), then fewest MB evicted."""
    return (
        p.cost,
        p.pending_s,
        p.evicted_mb,
        -p.free_after_mb,
        p.backend.error_score,
        p.backend.name,
    )


def _fit_key(p: _Placement) -> tuple[float, float, float, float, str]:
    """The smallest host it fits on, then the emptiest: the large hosts are the only room for
    the large models, and small models spread over them would leave none (then every large
    load evicts). Among hosts of one size the emptiest, which spreads the load, then the one
    with the fewest seconds of loads under way."""
    return (p.host_mb, -p.free_after_mb, p.pending_s, p.backend.error_score, p.backend.name)


def _load(p: _Placement, reason: Reason, wait_s: float = 0.0) -> Decision:
    return Decision("load", reason, p.backend.name, p.evict, p.cost, wait_s)


class DemandTracker:
    """Recent request rate per model, exponentially decayed; time is passed in.

    Example::

        demand = DemandTracker(half_life_s=60)
        demand.record("llama3:8b", now=0.0)
        demand.rate("llama3:8b", now=60.0)  # half of the rate seen at t=0
    """

    def __init__(self, half_life_s: float = 300.0) -> None:
        self.half_life_s = half_life_s
        self._value: dict[str, tuple[float, float]] = {}  # model -> (decayed count, at)

    def _decayed(self, model: str, now: float) -> float:
        value, at = self._value.get(model, (0.0, now))
        return value * 0.5 ** (max(0.0, now - at) / self.half_life_s)

    def record(self, model: str, now: float, count: float = 1.0) -> None:
        self._value[model] = (self._decayed(model, now) + count, now)

    def rate(self, model: str, now: float) -> float:
        """Requests per second (a steady rate r converges to r)."""
        return self._decayed(model, now) * math.log(2) / self.half_life_s

    def rates(self, now: float) -> dict[str, float]:
        return {model: self.rate(model, now) for model in self._value}
