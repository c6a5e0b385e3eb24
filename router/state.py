"""Soft residency state: what each backend holds, learned from the backends and our bookkeeping.

``FleetState`` is the router's memory between requests. Backends are the truth: the
refresher (``router/backends.py``) overwrites what they report every few seconds, and the
router's own bookkeeping (in-flight counts, loads it started, evictions it asked for) fills
the gaps in between. ``FleetState.view(now)`` turns it into the policy's frozen input.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from modelfleet.router.config import BackendConfig, ModelEntry, RouterConfig
from modelfleet.router.policy import BackendView, DemandTracker, FleetView, HostView, Residency

ModelStatus = Literal["loaded", "loading", "cold"]
FAILURE_WINDOW_S = 60.0
# what the policy sees of a model (``Residency``): a change to one of these on a backend's
# model drops that backend's cached view (``BackendState.view``)
VIEW_FIELDS = frozenset(
    {"status", "size_mb", "vram_mb", "in_flight", "slots", "last_used", "pinned"}
)
BACKEND_VIEW_FIELDS = frozenset({"healthy", "drained", "mode", "config", "learned", "models"})


@dataclass
class ModelState:
    """One model on one backend."""

    model: str  # the client-facing name
    status: ModelStatus = "cold"
    size_mb: int = 0
    vram_mb: int | None = None
    expires_at: float | None = None  # wall clock (time.time()), None = unknown/never
    in_flight: int = 0
    slots: int = 1
    last_used: float = 0.0  # monotonic
    load_started: float | None = None  # monotonic, while loading
    ready_at: float = 0.0  # monotonic; when the last load the router saw finished
    pinned: bool = False
    context_length: int | None = None
    unload_at: float | None = None  # router-kept keep_alive for backends without one (monotonic)
    details: dict[str, Any] = field(default_factory=dict)  # /api/tags details, digest
    changed_at: float = 0.0  # monotonic; when the router's own bookkeeping last set status
    owner: BackendState | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # the router's own decisions are newer than a backend report that was already in
        # flight when they were made; refreshers use observe() and skip stale reports
        if name == "status":
            object.__setattr__(self, "changed_at", time.monotonic())
        object.__setattr__(self, name, value)
        if name in VIEW_FIELDS:
            owner = self.__dict__.get("owner")  # not there yet while __init__ runs
            if owner is not None:
                owner.forget_view()

    def observe(self, status: ModelStatus, report_started: float) -> bool:
        """Apply a backend's report unless the router changed this model since it was asked."""
        if self.changed_at > report_started:
            return False
        object.__setattr__(self, "status", status)
        if self.owner is not None:
            self.owner.forget_view()
        if status != "loading":
            self.load_started = None
        return True


@dataclass
class BackendState:
    config: BackendConfig
    healthy: bool = True
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    next_check: float = 0.0
    backoff_s: float = 0.0
    last_error: str | None = None
    drained: bool = False
    removing: bool = False  # dropped by a config reload; goes once idle
    mode: str = ""  # llama-server: "router" or "single"
    last_refresh: float = 0.0  # monotonic
    models: dict[str, ModelState] = field(default_factory=dict)  # client name -> state
    learned: dict[str, str] = field(default_factory=dict)  # client name -> upstream name
    failures: deque[tuple[float, str]] = field(default_factory=deque)  # passive signals
    successes: deque[float] = field(default_factory=deque)
    counters: dict[str, int] = field(default_factory=dict)  # passive signal totals
    # front paths it answered 404/405 on (an Ollama without /v1/messages/count_tokens), per
    # model, since some servers answer 404 for a model they do not have too:
    # (path, model) -> (monotonic time, its message); asked again after NOT_SERVED_MEMORY_S
    not_serving: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    _catalog: dict[str, str] | None = field(default=None, init=False, repr=False)
    _serves: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    _aliases: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    # the policy's view of this backend, rebuilt only after something in it changed (a
    # request changes one backend; the others' views are reused): see FleetState.view
    _view: BackendView | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.drained = self.config.drained
        if self.kind == "openai":  # a hosted API: what it declares is always "resident"
            for entry in self.config.models:
                self.model(entry.name).status = "loaded"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def host(self) -> str:
        return self.config.host_name

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("learned", "config"):
            object.__setattr__(self, "_catalog", None)  # rebuilt on next use
        if name in BACKEND_VIEW_FIELDS:
            object.__setattr__(self, "_view", None)
        object.__setattr__(self, name, value)

    def forget_view(self) -> None:
        object.__setattr__(self, "_view", None)

    def catalog(self) -> dict[str, str]:
        """Models this backend serves: client name -> upstream name (do not modify)."""
        cached = self._catalog
        if cached is None:
            cached = dict(self.learned)
            aliases: dict[str, str] = {}
            for entry in self.config.models:
                cached[entry.name] = entry.upstream_name
                for alias in entry.aliases:
                    cached[alias] = entry.upstream_name
                    aliases[alias] = entry.name
            object.__setattr__(self, "_catalog", cached)
            object.__setattr__(self, "_serves", frozenset(cached))
            object.__setattr__(self, "_aliases", aliases)
        return cached

    def aliases(self) -> dict[str, str]:
        """The catalog's aliases: alias -> the model's name (cached with the catalog)."""
        self.catalog()
        return self._aliases

    def serves(self) -> frozenset[str]:
        """The catalog's client names, as a set (cached with it)."""
        self.catalog()
        return self._serves

    def upstream_name(self, model: str) -> str:
        return self.catalog().get(model, model)

    def client_name(self, upstream: str) -> str:
        for entry in self.config.models:
            if entry.upstream_name == upstream:
                return entry.name
        for client, up in self.learned.items():
            if up == upstream:
                return client
        return upstream

    def entry(self, model: str) -> ModelEntry | None:
        for entry in self.config.models:
            if model == entry.name or model in entry.aliases:
                return entry
        return None

    def slots_for(self, model: str) -> int:
        entry = self.entry(model)
        return (entry.slots if entry and entry.slots else None) or self.config.slots

    def model(self, model: str) -> ModelState:
        state = self.models.get(model)
        if state is None:
            state = self.models[model] = ModelState(model, slots=self.slots_for(model))
            entry = self.entry(model)
            if entry:
                state.size_mb = entry.size_mb + entry.kv_mb
            state.owner = self
        return state

    @property
    def can_load(self) -> bool:
        return self.kind in ("ollama", "llama-swap") or self.mode == "router"

    def record_failure(self, now: float, what: str) -> None:
        self.forget_view()  # its error score changed
        self.failures.append((now, what))
        self.counters[what] = self.counters.get(what, 0) + 1
        self._trim(now)

    def record_success(self, now: float) -> None:
        self.successes.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.failures and self.failures[0][0] < now - FAILURE_WINDOW_S:
            self.failures.popleft()
        while self.successes and self.successes[0] < now - FAILURE_WINDOW_S:
            self.successes.popleft()

    def error_score(self, now: float) -> float:
        """Share of recent requests that failed, 0..1 (extra load in the policy's eyes)."""
        self._trim(now)
        total = len(self.failures) + len(self.successes)
        return len(self.failures) / total if total else 0.0

    def in_flight(self) -> int:
        return sum(m.in_flight for m in self.models.values())


@dataclass
class Decided:
    """One routing decision, kept for the dashboard and the admin state."""

    at: float  # wall clock
    model: str
    action: str
    reason: str
    backend: str | None
    evict: list[tuple[str, str]]
    queued: int


class FleetState:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.backends: dict[str, BackendState] = {b.name: BackendState(b) for b in config.backends}
        self.demand = DemandTracker(config.policy.demand_half_life_s)
        self.queued: dict[str, int] = {}
        self.load_s: dict[str, float] = {}  # EWMA of observed load times
        self.service_s: dict[str, float] = {}  # EWMA of observed slot hold times
        self.decisions: deque[Decided] = deque(maxlen=config.recent_decisions or 1)
        self.started = time.time()

    # -- configuration ----------------------------------------------------------------------

    def apply_config(self, config: RouterConfig) -> None:
        """Adopt a reloaded config; backends keep their learned state and in-flight counts."""
        self.config = config
        wanted = {b.name: b for b in config.backends}
        for name, state in list(self.backends.items()):
            if name in wanted:
                was_drained_by_config = state.config.drained
                state.config = wanted[name]
                state.removing = False
                if wanted[name].drained or was_drained_by_config:
                    state.drained = wanted[name].drained
                for model, ms in state.models.items():
                    ms.slots = state.slots_for(model)
            elif state.in_flight() == 0:
                del self.backends[name]
            else:
                state.removing = True
                state.drained = True
        for name, cfg in wanted.items():
            if name not in self.backends:
                self.backends[name] = BackendState(cfg)
        self.decisions = deque(self.decisions, maxlen=config.recent_decisions or 1)

    def forget_removed(self) -> None:
        for name, state in list(self.backends.items()):
            if state.removing and state.in_flight() == 0:
                del self.backends[name]

    # -- models -----------------------------------------------------------------------------

    def backends_with(self, model: str) -> list[BackendState]:
        """Backends whose catalog has ``model`` (by name or alias), whatever their state."""
        return [state for state in self.backends.values() if model in state.catalog()]

    def known_models(self) -> set[str]:
        names: set[str] = set()
        for state in self.backends.values():
            names.update(state.catalog())
        return names

    def resolve(self, model: str) -> str | None:
        """The fleet's name for what a client asked (``llama3`` finds ``llama3:latest``; an
        alias finds its model, so that both names share one residency and one queue)."""
        candidates = [model]
        if ":" not in model:
            candidates.append(f"{model}:latest")
        elif model.endswith(":latest"):
            candidates.append(model.removesuffix(":latest"))
        for name in candidates:
            for state in self.backends.values():
                if name in state.aliases():
                    return state.aliases()[name]
            if any(name in state.serves() for state in self.backends.values()):
                return name
        return None

    def size_mb(self, model: str) -> int:
        for state in self.backends.values():
            entry = state.entry(model)
            if entry and entry.size_mb:
                return entry.size_mb + entry.kv_mb
        sizes = [s.models[model].size_mb for s in self.backends.values() if model in s.models]
        return max(sizes, default=0)

    def observe_load(self, model: str, seconds: float) -> None:
        self.load_s[model] = _ewma(self.load_s.get(model), seconds)

    def observe_service(self, model: str, seconds: float) -> None:
        self.service_s[model] = _ewma(self.service_s.get(model), seconds)

    # -- the policy's input -----------------------------------------------------------------

    def view(self, now: float) -> FleetView:
        hosts: dict[str, int] = {}
        for state in self.backends.values():
            # backends on one host share its VRAM: the host budget is the largest declared
            hosts[state.host] = max(hosts.get(state.host, 0), state.config.vram_mb)
        backends = tuple(self._cached_view(s, now) for s in self.backends.values())
        return FleetView(
            backends=backends,
            hosts={h: HostView(h, v) for h, v in hosts.items()},
            demand=self.demand.rates(now),
            queued=dict(self.queued),
            load_s=dict(self.load_s),
            service_s=dict(self.service_s),
        )

    def _cached_view(self, state: BackendState, now: float) -> BackendView:
        """``state``'s view, reused until something in it changes. A backend with recent
        failures is rebuilt every time: its error score moves with every request and with
        time as failures age out of the window."""
        view = state._view
        if view is None or state.failures:
            view = self._backend_view(state, now)
            object.__setattr__(state, "_view", view)
        return view

    def _backend_view(self, state: BackendState, now: float) -> BackendView:
        residents = tuple(
            Residency(
                model=m.model,
                state=m.status,  # cold ones are filtered out
                size_mb=m.size_mb,
                vram_mb=m.vram_mb,
                in_flight=m.in_flight,
                slots=m.slots,
                last_used=m.last_used,
                pinned=m.pinned,
            )
            for m in state.models.values()
            if m.status != "cold"
        )
        serves = state.serves()
        return BackendView(
            name=state.name,
            host=state.host,
            serves=serves if serves or state.kind != "openai" else None,
            residents=residents,
            healthy=state.healthy,
            drained=state.drained,
            can_load=state.can_load,
            can_unload=state.can_load,
            max_loaded=state.config.max_loaded,
            slots=state.config.slots,
            error_score=state.error_score(now),
            weight=state.config.weight,
        )


def _ewma(old: float | None, new: float, alpha: float = 0.3) -> float:
    return new if old is None else (1 - alpha) * old + alpha * new


@dataclass
class Outcome:
    at: float
    bad: bool
    transport: bool  # connect error, timeout, cut stream: always the backend's fault
    key: str | None  # which request (hash of its body), for answered 5xx


@dataclass
class ErrorRate:
    """One backend's recent outcomes, for the error-rate rule (router/health.py)."""

    outcomes: deque[Outcome] = field(default_factory=deque)
    ejections: int = 0
    last_ejected: float = float("-inf")

    def trim(self, now: float, window_s: float, keep: int) -> None:
        while self.outcomes and (self.outcomes[0].at < now - window_s or len(self.outcomes) > keep):
            self.outcomes.popleft()

    def answered_5xx_share(self) -> float | None:
        answered = [o for o in self.outcomes if not o.transport]
        if not answered:
            return None
        return sum(o.bad for o in answered) / len(answered)
