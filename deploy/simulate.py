"""What-if simulator: replay a request trace through a routing policy on a modeled fleet.

A discrete-event simulation with a virtual clock (no sleeping, no threads). The fleet is a
set of backends (an Ollama, llama-swap or llama-server instance each) on hosts with a VRAM
budget; a model takes VRAM while loaded, a load takes ``load_fixed_s + size / load_gbps``
and each generated token ``size / mem_bandwidth_gbps`` (decode is memory-bound).

The policy under test is the router's real code (``router/policy.py``) through
:class:`RouterPolicy`, or one of the baselines that other routers use: round-robin,
least-connections and PolyLlama's least-models-per-instance. Baselines are model-blind
the way those routers are: the backend itself then queues, loads and evicts (LRU among idle
models, one load at a time, like Ollama's scheduler). :func:`cold_load_bounds` gives the
valid lower bounds every result is compared with (``deploy/bounds.py``).

Example::

    fleet = SimFleet.from_router_config(load_config("router.yaml"))
    trace = generate_trace(TraceSpec(seed=1, models=fleet.model_names()))
    result = Simulator(fleet, RoundRobin(), trace).run()
    print(result.summary()["cold_loads"])

The trace format (JSON lines) is documented in ``docs/simulate.md``.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import json
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import click
import pydantic
import yaml

from modelfleet.deploy import bounds
from modelfleet.router import policy
from modelfleet.router.bookkeeping import Bookkeeping, Lease, Ticket
from modelfleet.router.config import (
    BackendConfig,
    ModelEntry,
    PolicyConfig,
    QueueConfig,
    RouterConfig,
    validation_problems,
)
from modelfleet.router.policy import Decision, DemandTracker
from modelfleet.router.state import FleetState, ModelStatus

MB_PER_GB = 1024
Evictions = tuple[tuple[str, str], ...]  # (backend, model) pairs


class SimulationError(Exception):
    """Bad simulator input; the message names the file, line, model or backend."""


# --------------------------------------------------------------------------- the modeled fleet


@dataclass(frozen=True)
class HardwareModel:
    """How fast a backend loads and runs a model. Defaults: NVMe, an L40S/A6000-class GPU."""

    load_gbps: float = 2.0  # weights read from disk (page cache: ~9 GB/s)
    load_fixed_s: float = 1.5  # process start, CUDA context, readiness poll
    mem_bandwidth_gbps: float = 800.0  # decode reads all weights once per token
    prefill_speedup: float = 25.0  # prompt tokens/s relative to decode tokens/s

    def load_s(self, size_mb: int) -> float:
        return self.load_fixed_s + size_mb / MB_PER_GB / self.load_gbps

    def decode_s_per_token(self, size_mb: int) -> float:
        return max(size_mb, 256) / MB_PER_GB / self.mem_bandwidth_gbps

    def prefill_s_per_token(self, size_mb: int) -> float:
        return self.decode_s_per_token(size_mb) / self.prefill_speedup


@dataclass(frozen=True)
class SimModel:
    name: str
    size_mb: int  # weights + KV cache: what it occupies in VRAM
    slots: int | None = None  # parallel requests for this model; None = the backend's


@dataclass
class Residency:
    """One model on one simulated backend: ``loading`` until ``ready_at``, then ``loaded``
    (the router's vocabulary, ``router.state.ModelStatus``; gone from the dict = ``cold``)."""

    model: str
    size_mb: int
    state: ModelStatus  # "loading" | "loaded"
    ready_at: float
    in_flight: int = 0
    last_used: float = 0.0
    load_started: float = 0.0


@dataclass
class SimBackend:
    name: str
    host: str
    vram_mb: int  # 0 = unknown, never limits
    slots: int
    models: dict[str, SimModel]
    max_loaded: int | None = None
    kind: str = "ollama"
    residency: dict[str, Residency] = field(default_factory=dict)
    # Requests sent to this backend that wait for a slot or a load (a model-blind router
    # leaves the queueing to the backend, as Ollama and llama-swap do).
    waiting: dict[str, deque[Request]] = field(default_factory=dict)
    pending_loads: deque[str] = field(default_factory=deque)  # one load at a time
    loading_now: str | None = None

    def in_flight(self) -> int:
        return sum(r.in_flight for r in self.residency.values())

    def queued(self, model: str | None = None) -> int:
        if model is not None:
            return len(self.waiting.get(model, ()))
        return sum(len(q) for q in self.waiting.values())

    def model_slots(self, model: str) -> int:
        entry = self.models.get(model)
        return entry.slots if entry is not None and entry.slots else self.slots

    def free_slots(self, model: str) -> int:
        res = self.residency.get(model)
        if res is None or res.state != "loaded":
            return 0
        return max(self.model_slots(model) - res.in_flight, 0)


@dataclass
class SimFleet:
    backends: list[SimBackend]
    hardware: HardwareModel = field(default_factory=HardwareModel)

    def __post_init__(self) -> None:
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise SimulationError(f"duplicate backend names in fleet: {sorted(names)}")
        self.by_name = {b.name: b for b in self.backends}

    def model_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for backend in self.backends:
            seen.update(dict.fromkeys(backend.models))
        return list(seen)

    def model_size(self, model: str) -> int:
        for backend in self.backends:
            if model in backend.models:
                return backend.models[model].size_mb
        raise SimulationError(f"model {model!r} is in no backend's catalog")

    def host_budget_mb(self, host: str) -> int:
        """Backends on one host share its GPUs, so the host's budget is the largest of theirs."""
        budgets = [b.vram_mb for b in self.backends if b.host == host]
        return 0 if 0 in budgets else max(budgets)

    def host_used_mb(self, host: str) -> int:
        return sum(r.size_mb for b in self.backends if b.host == host for r in b.residency.values())

    def host_free_mb(self, host: str) -> float:
        budget = self.host_budget_mb(host)
        return math.inf if budget == 0 else budget - self.host_used_mb(host)

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(b.host for b in self.backends))

    @classmethod
    def from_router_config(
        cls, config: RouterConfig, hardware: HardwareModel | None = None
    ) -> SimFleet:
        """The fleet a ``router.yaml`` describes (what the deploy renders from the plan)."""
        backends = []
        for bc in config.backends:
            if bc.drained:
                continue
            if not bc.models:
                raise SimulationError(
                    f"backend {bc.name!r} lists no models; the simulator needs each model's "
                    "size_mb (render router.yaml from an inventory with a catalog)"
                )
            models = {}
            for entry in bc.models:
                size = entry.size_mb + entry.kv_mb
                if size <= 0:
                    raise SimulationError(
                        f"backend {bc.name!r}, model {entry.name!r}: size_mb + kv_mb is 0"
                    )
                if bc.vram_mb and size > bc.vram_mb:
                    raise SimulationError(
                        f"backend {bc.name!r}, model {entry.name!r}: {size} MB does not fit "
                        f"in the backend's {bc.vram_mb} MB"
                    )
                models[entry.name] = SimModel(entry.name, size, entry.slots)
            backends.append(
                SimBackend(
                    name=bc.name,
                    host=bc.host_name,
                    vram_mb=bc.vram_mb,
                    slots=bc.slots,
                    max_loaded=bc.max_loaded,
                    kind=bc.kind,
                    models=models,
                )
            )
        if not backends:
            raise SimulationError("the fleet has no (undrained) backends")
        return cls(backends, hardware or HardwareModel())

    def to_router_config(self) -> RouterConfig:
        """The router.yaml this fleet corresponds to (for fleets built in code)."""
        return RouterConfig(
            backends=[
                BackendConfig(
                    name=b.name,
                    url=f"http://{b.host}.invalid:11434",
                    kind=b.kind,  # type: ignore[arg-type]
                    host=b.host,
                    vram_mb=b.vram_mb,
                    slots=b.slots,
                    max_loaded=b.max_loaded,
                    models=[
                        ModelEntry(name=m.name, size_mb=m.size_mb, slots=m.slots)
                        for m in b.models.values()
                    ],
                )
                for b in self.backends
            ]
        )

    def describe(self) -> dict[str, Any]:
        return {
            "backends": [
                {
                    "name": b.name,
                    "host": b.host,
                    "vram_mb": b.vram_mb,
                    "slots": b.slots,
                    "models": len(b.models),
                }
                for b in self.backends
            ],
            "hardware": asdict(self.hardware),
            "catalog_mb": sum(self.model_size(m) for m in self.model_names()),
            "vram_mb": sum(self.host_budget_mb(h) for h in self.hosts()),
        }


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Request:
    """One trace line. ``t`` is seconds from the start of the trace."""

    t: float
    model: str
    prompt_tokens: int = 256
    output_tokens: int = 128
    id: str = ""


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text input (a byte order mark is skipped); a file that cannot be
    read, or a byte that is not UTF-8 (a UTF-16 file), is a :class:`SimulationError` naming
    the file and line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SimulationError(
            f"{path}:{line}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


def read_trace(path: str | Path) -> list[Request]:
    """Read a JSON-lines trace (see docs/simulate.md); errors name the file and line."""
    path = Path(path)
    lines = read_lines(path)
    requests = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requests.append(_parse_trace_line(line, f"{path}:{number}"))
    if not requests:
        raise SimulationError(f"{path}: the trace has no requests")
    requests.sort(key=lambda r: r.t)
    return requests


def _parse_trace_line(line: str, where: str) -> Request:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SimulationError(f"{where}: not JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise SimulationError(f"{where}: expected an object, got {type(raw).__name__}")
    unknown = set(raw) - {"t", "model", "prompt_tokens", "output_tokens", "id"}
    if unknown:
        raise SimulationError(f"{where}: unknown key(s) {sorted(unknown)}")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise SimulationError(f"{where}: 'model' must be a non-empty string")
    t = raw.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool) or t < 0 or not math.isfinite(t):
        raise SimulationError(f"{where}: 't' must be a number of seconds >= 0")
    tokens = {}
    for key, default in (("prompt_tokens", 256), ("output_tokens", 128)):
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SimulationError(f"{where}: {key!r} must be an integer >= 0")
        tokens[key] = value
    return Request(float(t), model, id=str(raw.get("id", "")), **tokens)


def write_trace(requests: Iterable[Request], path: str | Path) -> None:
    with Path(path).open("w") as out:
        for r in requests:
            line = {"t": r.t, "model": r.model}  # not rounded: a replay is the same run
            line |= {"prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens}
            if r.id:
                line["id"] = r.id
            out.write(json.dumps(line) + "\n")


@dataclass(frozen=True)
class TraceSpec:
    """A synthetic workload: Zipf popularity, Poisson arrivals, bursts and a popularity shift.

    The same spec and seed always give the same trace.
    """

    models: Sequence[str]
    seed: int = 1
    duration_s: float = 3600.0
    rate_rps: float = 1.0
    zipf_s: float = 1.1
    # At this fraction of the trace the ranks are re-dealt: yesterday's tail becomes the head.
    shift_at: float | None = 0.5
    bursts: int = 6  # short floods of one model (a batch job, an agent loop)
    burst_requests: int = 40
    burst_span_s: float = 30.0
    mean_prompt_tokens: int = 400
    mean_output_tokens: int = 200


def zipf_weights(n: int, s: float) -> list[float]:
    raw = [1.0 / (rank**s) for rank in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def generate_trace(spec: TraceSpec) -> list[Request]:
    return _generate(spec)[0]


@dataclass(frozen=True)
class _Popularity:
    """What a synthetic trace was drawn from: the ranks before and after the shift, and the
    bursts (start, model)."""

    ranking: list[str]
    shifted: list[str]
    shift_t: float
    bursts: list[tuple[float, str]]


def _generate(spec: TraceSpec) -> tuple[list[Request], _Popularity]:
    if len(spec.models) < 2:
        raise SimulationError("a synthetic trace needs at least two models")
    rng = random.Random(spec.seed)
    weights = zipf_weights(len(spec.models), spec.zipf_s)
    ranking = list(spec.models)
    rng.shuffle(ranking)
    shifted = list(ranking)
    rng.shuffle(shifted)
    shift_t = math.inf if spec.shift_at is None else spec.shift_at * spec.duration_s

    def tokens(mean: int) -> int:
        # Long-tailed lengths: most requests short, a few long.
        return max(1, int(rng.lognormvariate(math.log(mean) - 0.5, 1.0)))

    requests = []
    t = rng.expovariate(spec.rate_rps)
    while t < spec.duration_s:
        order = ranking if t < shift_t else shifted
        model = rng.choices(order, weights)[0]
        requests.append(
            Request(t, model, tokens(spec.mean_prompt_tokens), tokens(spec.mean_output_tokens))
        )
        t += rng.expovariate(spec.rate_rps)
    bursts = []
    for _ in range(spec.bursts):
        start = rng.uniform(0, max(spec.duration_s - spec.burst_span_s, 0))
        model = rng.choice(spec.models)
        bursts.append((start, model))
        for _ in range(spec.burst_requests):
            requests.append(
                Request(
                    start + rng.uniform(0, min(spec.burst_span_s, spec.duration_s)),
                    model,
                    tokens(spec.mean_prompt_tokens),
                    tokens(spec.mean_output_tokens),
                )
            )
    requests.sort(key=lambda r: r.t)
    trace = [
        Request(r.t, r.model, r.prompt_tokens, r.output_tokens, f"r{i}")
        for i, r in enumerate(requests)
    ]
    return trace, _Popularity(ranking, shifted, shift_t, bursts)


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Choice:
    """Send the request to ``backend``. ``evict`` lists ``(backend, model)`` pairs the router
    unloads first (empty: the backend makes room itself, least recently used first)."""

    backend: str
    evict: Evictions = ()
    reason: str = ""


Send = tuple[Request, Choice]  # a request the router sends now, and where
Rejection = tuple[Request, str]  # a request the router refused, and why ("queue-full", "deadline")


class Policy(Protocol):
    """The router in front of the simulated backends. The simulator tells it what happens
    (arrivals, loads, finished requests, models a backend dropped on its own) and sends what
    it returns. ``kick`` is asked after every event that may free capacity, and at every
    time ``wakeups`` returns; ``held`` counts the requests it still keeps queued;
    ``rejected`` hands over the requests it refused since it was last asked."""

    name: str

    def start(self, fleet: SimFleet) -> None: ...

    def arrive(self, request: Request, now: float) -> list[Send]: ...

    def kick(self, now: float) -> list[Send]: ...

    def wakeups(self) -> list[float]: ...

    def held(self) -> int: ...

    def rejected(self) -> list[Rejection]: ...

    def load_began(self, backend: str, model: str, now: float) -> None: ...

    def load_done(self, backend: str, model: str, now: float) -> None: ...

    def finished(self, request: Request, backend: str, now: float) -> None: ...

    def dropped(self, backend: str, model: str, now: float) -> None: ...


class _Blind:
    """Model-blind baselines: every request goes straight to a backend (``choose``), which
    queues, loads and evicts on its own; the router keeps no state to tell."""

    fleet: SimFleet

    def start(self, fleet: SimFleet) -> None:
        self.fleet = fleet

    def arrive(self, request: Request, now: float) -> list[Send]:
        return [(request, self.choose(request, self.fleet, now))]

    def choose(self, request: Request, fleet: SimFleet, now: float) -> Choice:
        raise NotImplementedError

    def kick(self, now: float) -> list[Send]:
        return []

    def wakeups(self) -> list[float]:
        return []

    def held(self) -> int:
        return 0

    def rejected(self) -> list[Rejection]:
        return []  # the backend queues whatever it is sent

    def load_began(self, backend: str, model: str, now: float) -> None:
        pass

    def load_done(self, backend: str, model: str, now: float) -> None:
        pass

    def finished(self, request: Request, backend: str, now: float) -> None:
        pass

    def dropped(self, backend: str, model: str, now: float) -> None:
        pass


def candidates(fleet: SimFleet, model: str) -> list[SimBackend]:
    found = [b for b in fleet.backends if model in b.models]
    if not found:
        raise SimulationError(f"model {model!r} is in no backend's catalog")
    return found


class RoundRobin(_Blind):
    """nginx / OllamaFlow / GPUStack default: the next backend that lists the model."""

    name = "round-robin"

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def choose(self, request: Request, fleet: SimFleet, now: float) -> Choice:
        options = candidates(fleet, request.model)
        index = self._next.get(request.model, 0)
        self._next[request.model] = index + 1
        return Choice(options[index % len(options)].name, reason="round-robin")


class LeastConnections(_Blind):
    """Olla's default, LiteLLM least-busy: fewest requests in flight through this router
    (ties: first listed)."""

    name = "least-connections"

    def choose(self, request: Request, fleet: SimFleet, now: float) -> Choice:
        options = candidates(fleet, request.model)
        best = min(options, key=lambda b: b.in_flight() + b.queued())
        return Choice(best.name, reason="least-connections")


class LeastModelsPerInstance(_Blind):
    """PolyLlama's rule (model_router.lua): running there → that instance; else the
    remembered mapping; else the instance with the fewest mapped models."""

    name = "least-models (PolyLlama)"

    def __init__(self) -> None:
        self.mapping: dict[str, str] = {}

    def choose(self, request: Request, fleet: SimFleet, now: float) -> Choice:
        options = candidates(fleet, request.model)
        for backend in options:
            if request.model in backend.residency:  # /api/ps shows it (or a load lock)
                return Choice(backend.name, reason="running")
        mapped = self.mapping.get(request.model)
        if mapped is not None and mapped in {b.name for b in options}:
            return Choice(mapped, reason="mapped")
        counts = {b.name: 0 for b in options}
        for instance in self.mapping.values():
            if instance in counts:
                counts[instance] += 1
        best = min(options, key=lambda b: counts[b.name])
        self.mapping[request.model] = best.name
        return Choice(best.name, reason="fewest mapped models")


class NextUseDemand(DemandTracker):
    """Clairvoyant demand, for a reference run only: a model's rate is one over the time to
    its next request in the trace (0 when it is never asked for again).

    Plugged into the router's bookkeeping in place of its decayed request counts, it shows
    how many cold loads the router's own rules (victim sets, holds, placement) would make
    if they knew exactly when each model is needed next. It is not an online policy and
    not a bound.

    Example::

        demand = NextUseDemand([Request(t=0.0, model="a"), Request(t=10.0, model="a")])
        demand.rate("a", now=5.0)  # 0.2: asked for again in 5 s
    """

    MIN_GAP_S = 0.5  # a request due at once counts as 2 req/s, not infinitely many

    def __init__(self, trace: Sequence[Request]) -> None:
        super().__init__()
        self._times: dict[str, list[float]] = {}
        for request in sorted(trace, key=lambda r: r.t):
            self._times.setdefault(request.model, []).append(request.t)

    def record(self, model: str, now: float, count: float = 1.0) -> None:
        """The future is already known: nothing to learn."""

    def rate(self, model: str, now: float) -> float:
        times = self._times.get(model, [])
        upcoming = bisect.bisect_right(times, now)
        if upcoming == len(times):
            return 0.0
        return 1.0 / max(times[upcoming] - now, self.MIN_GAP_S)

    def rates(self, now: float) -> dict[str, float]:
        return {model: self.rate(model, now) for model in self._times}


class TraceRates(DemandTracker):
    """The rates a synthetic trace was drawn from, for a reference run only: the model's
    Zipf share of ``rate_rps`` at its rank at that time (before or after the shift), plus
    ``burst_requests / burst_span_s`` while one of its bursts runs.

    Plugged into the router's bookkeeping in place of its decayed request counts, it shows
    what the router's rules do with perfect knowledge of the workload's rates, but not of
    when each request will come (which :class:`NextUseDemand` knows). Not a bound.

    Example::

        rates = TraceRates(TraceSpec(models=["a", "b"], bursts=0, shift_at=None))
        sum(rates.rates(now=0.0).values())  # 1.0 req/s, the spec's rate
    """

    def __init__(self, spec: TraceSpec) -> None:
        super().__init__()
        self.spec = spec
        self.popularity = _generate(spec)[1]
        self.weights = zipf_weights(len(spec.models), spec.zipf_s)

    def record(self, model: str, now: float, count: float = 1.0) -> None:
        """The rates are known: nothing to learn."""

    def rate(self, model: str, now: float) -> float:
        spec, popularity = self.spec, self.popularity
        order = popularity.ranking if now < popularity.shift_t else popularity.shifted
        rate = spec.rate_rps * self.weights[order.index(model)] if model in order else 0.0
        for start, burst_model in popularity.bursts:
            if burst_model == model and start <= now <= start + spec.burst_span_s:
                rate += spec.burst_requests / spec.burst_span_s
        return rate

    def rates(self, now: float) -> dict[str, float]:
        return {model: self.rate(model, now) for model in self.spec.models}


class RouterPolicy:
    """modelfleet's own router, replayed with its own code: ``router.bookkeeping.Bookkeeping``
    (queue, late binding, slots, residency, learning) around ``router.policy.Policy``, the
    same objects the aiohttp scheduler drives. This adapter only translates the simulator's
    events into the bookkeeping's calls, with the virtual time. ``demand`` replaces the
    router's own demand tracker (a reference run with :class:`NextUseDemand`). ``queue``
    applies the router's queue limits (``queue:`` in router.yaml): a request finding
    ``max_per_model`` others of its model waiting is refused (``queue-full``), one still
    waiting after ``deadline_s`` gives up (``deadline``); None = queue without limit."""

    name = "modelfleet"

    def __init__(
        self,
        config: RouterConfig | None = None,
        demand: DemandTracker | None = None,
        queue: QueueConfig | None = None,
    ) -> None:
        self.config = config
        self.demand = demand
        self.queue = queue
        self.books: Bookkeeping | None = None
        self._tickets: dict[int, Request] = {}  # id(ticket) -> the trace request it stands for
        self._leases: dict[str, Lease] = {}  # request id -> its slot
        self._deadlines: deque[tuple[float, Ticket]] = deque()  # queued tickets, oldest first
        self._new_deadlines: list[float] = []  # not yet handed to the simulator's timer
        self._rejected: list[Rejection] = []

    def start(self, fleet: SimFleet) -> None:
        config = self.config or fleet.to_router_config()
        knobs = config.policy.model_dump(exclude={"demand_half_life_s"})
        state = FleetState(config)
        for backend in state.backends.values():
            if backend.kind == "llama-server":
                # as roles/llama_server deploys it: router mode, which loads models on demand
                # (the live router learns the mode from the backend; here there is none to ask)
                backend.mode = "router"
        if self.demand is not None:
            state.demand = self.demand
        self.books = Bookkeeping(state, policy.Policy(policy.PolicyParams(**knobs)))

    def _books(self) -> Bookkeeping:
        if self.books is None:
            raise SimulationError("RouterPolicy.start(fleet) was not called")
        return self.books

    def arrive(self, request: Request, now: float) -> list[Send]:
        ticket = Ticket(request.model, since=request.t)
        self._tickets[id(ticket)] = request
        limit = self.queue.max_per_model if self.queue else None
        arrival = self._books().arrive(ticket, now, limit=limit)
        if arrival.outcome == "full":
            self._rejected.append((self._tickets.pop(id(ticket)), "queue-full"))
            return []
        if arrival.outcome == "queued":
            if self.queue:  # every ticket waits the same deadline: FIFO order is time order
                self._deadlines.append((now + self.queue.deadline_s, ticket))
                self._new_deadlines.append(now + self.queue.deadline_s)
            return []
        return [self._send(ticket, arrival.lease, arrival.decision)]

    def kick(self, now: float) -> list[Send]:
        sends = [self._send(b.ticket, b.lease, b.decision) for b in self._books().kick(now)]
        # a ticket bound at its deadline's very instant made it; one still queued gives up
        while self._deadlines and self._deadlines[0][0] <= now:
            _, ticket = self._deadlines.popleft()
            if id(ticket) in self._tickets:
                self._books().withdraw(ticket)
                self._rejected.append((self._tickets.pop(id(ticket)), "deadline"))
        return sends

    def rejected(self) -> list[Rejection]:
        rejected, self._rejected = self._rejected, []
        return rejected

    def _send(self, ticket: Ticket, lease: Lease | None, decision: Decision | None) -> Send:
        request = self._tickets.pop(id(ticket))
        if lease is None or decision is None:
            reason = decision.reason if decision else "-"
            raise SimulationError(f"the router policy rejected model {request.model!r} ({reason})")
        self._leases[request.id] = lease
        return request, Choice(lease.backend.name, decision.evict, decision.reason)

    def wakeups(self) -> list[float]:
        deadlines, self._new_deadlines = self._new_deadlines, []
        return self._books().take_wakeups() + deadlines

    def held(self) -> int:
        return sum(len(q) for q in self._books().queues.values())

    def load_began(self, backend: str, model: str, now: float) -> None:
        books = self._books()
        books.load_began(books.fleet.backends[backend], model, now)

    def load_done(self, backend: str, model: str, now: float) -> None:
        books = self._books()
        books.loaded(books.fleet.backends[backend], model, now)

    def finished(self, request: Request, backend: str, now: float) -> None:
        self._books().release(self._leases.pop(request.id), now, ok=True)

    def dropped(self, backend: str, model: str, now: float) -> None:
        books = self._books()
        books.unloaded(books.fleet.backends[backend], model, now)


# --------------------------------------------------------------------------- the simulator

# Event kinds, in the order they run at one instant: a finished request frees its slot
# before a load completes, both before a new arrival looks at the fleet, and a keep-alive
# expiry comes last so that a request arriving at that very instant still finds the model.
FINISH, LOAD_DONE, ARRIVAL, EXPIRE, RETRY = 0, 1, 2, 3, 4


@dataclass
class Served:
    request: Request
    backend: str
    first_token_at: float
    finished_at: float
    cold: bool  # waited for a load


@dataclass
class SimResult:
    policy: str
    served: list[Served]
    loads: int
    replica_loads: int  # loads of a model already loaded or loading elsewhere
    evictions: int
    load_seconds: float
    duration_s: float
    decisions: dict[str, int]
    events: list[tuple[float, str, str]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # refused by the router, per reason

    def summary(self) -> dict[str, Any]:
        ttft = sorted(s.first_token_at - s.request.t for s in self.served)
        tokens = sum(s.request.output_tokens for s in self.served)
        return {
            "policy": self.policy,
            "requests": len(self.served),
            "rejected": sum(self.rejected.values()),
            "cold_loads": self.loads,
            "replica_loads": self.replica_loads,
            "evictions": self.evictions,
            "load_seconds": round(self.load_seconds, 1),
            "cold_requests": sum(s.cold for s in self.served),
            "ttft_p50_s": round(percentile(ttft, 50), 3),
            "ttft_p99_s": round(percentile(ttft, 99), 3),
            "ttft_mean_s": round(sum(ttft) / len(ttft), 3) if ttft else 0.0,
            "ttft_max_s": round(ttft[-1], 3) if ttft else 0.0,
            "throughput_rps": round(len(self.served) / self.duration_s, 4),
            "throughput_tokens_s": round(tokens / self.duration_s, 1),
            "makespan_s": round(self.duration_s, 1),
            "decisions": dict(sorted(self.decisions.items())),
            "rejected_reasons": dict(sorted(self.rejected.items())),
        }


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(math.ceil(pct / 100 * len(sorted_values)), 1)
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Simulator:
    """Replay ``trace`` through ``policy`` on ``fleet`` (which it mutates: pass a fresh one)."""

    def __init__(
        self,
        fleet: SimFleet,
        policy: Policy,
        trace: Sequence[Request],
        *,
        keep_alive_s: float | None = None,
        record_events: bool = False,
    ) -> None:
        for request in trace:
            candidates(fleet, request.model)  # fail early, naming the model
        if len({r.id for r in trace}) != len(trace):  # ids key the bookkeeping: make them unique
            trace = [replace(r, id=f"{r.id or 'r'}#{i}") for i, r in enumerate(trace)]
        self.fleet = fleet
        self.policy = policy
        self.trace = trace
        self.keep_alive_s = keep_alive_s
        self.record_events = record_events
        self.now = 0.0
        self._events: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._cold: set[str] = set()  # ids of requests that waited for a load
        self._served: list[Served] = []
        self._started: dict[str, tuple[str, float]] = {}  # id -> backend, first token
        self._loads = self._replica_loads = self._evictions = 0
        self._load_seconds = 0.0
        self._decisions: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self._log: list[tuple[float, str, str]] = []
        self._retries: set[float] = set()  # wake-ups scheduled for held requests

    # -- event queue
    def _schedule(self, at: float, kind: int, payload: Any) -> None:
        heapq.heappush(self._events, (at, kind, self._seq, payload))
        self._seq += 1

    def run(self) -> SimResult:
        for backend in self.fleet.backends:
            if backend.kind == "openai":  # any OpenAI server: serves what it lists, no loads
                for model in backend.models.values():
                    res = Residency(model.name, model.size_mb, "loaded", 0.0)
                    backend.residency.setdefault(model.name, res)
        self.policy.start(self.fleet)
        for request in self.trace:
            self._schedule(request.t, ARRIVAL, request)
        while self._events:
            at, kind, _, payload = heapq.heappop(self._events)
            self.now = at
            if kind == ARRIVAL:
                self._note("arrival", payload.id)
                self._send(self.policy.arrive(payload, at))
            elif kind == LOAD_DONE:
                self._load_done(*payload)
            elif kind == FINISH:
                self._finish(*payload)
            elif kind == RETRY:  # a held request's hold ran out: decide again
                self._retries.discard(payload)
                self._kick()
            else:
                self._expire(*payload)
        unserved = self.policy.held() + sum(b.queued() for b in self.fleet.backends)
        if unserved:
            raise SimulationError(
                f"policy {self.policy.name!r} left {unserved} request(s) unserved at the end "
                "(it held them in the router queue and never placed them)"
            )
        first = min((r.t for r in self.trace), default=0.0)
        last = max((s.finished_at for s in self._served), default=first)
        return SimResult(
            policy=self.policy.name,
            served=self._served,
            loads=self._loads,
            replica_loads=self._replica_loads,
            evictions=self._evictions,
            load_seconds=self._load_seconds,
            duration_s=max(last - first, 1e-9),
            decisions=self._decisions,
            events=self._log,
            rejected=self._rejected,
        )

    def _note(self, what: str, detail: str) -> None:
        if self.record_events:
            self._log.append((round(self.now, 6), what, detail))

    # -- routing
    def _send(self, sends: list[Send]) -> None:
        """Send what the router decided, then arm the wake-ups it asked for."""
        for request, choice in sends:
            backend = self.fleet.by_name.get(choice.backend)
            if backend is None or request.model not in backend.models:
                raise SimulationError(
                    f"policy {self.policy.name!r} sent model {request.model!r} to "
                    f"{choice.backend!r}, which does not serve it"
                )
            reason = choice.reason or "-"
            self._decisions[reason] = self._decisions.get(reason, 0) + 1
            self._note("route", f"{request.id}->{backend.name} ({choice.reason})")
            self._dispatch(request, backend, choice.evict)
        for request, why in self.policy.rejected():
            self._rejected[why] = self._rejected.get(why, 0) + 1
            self._note("reject", f"{request.id} ({why})")
        for until in self.policy.wakeups():
            if until not in self._retries:  # one wake-up per instant is enough
                self._retries.add(until)
                self._schedule(max(until, self.now), RETRY, until)

    def _kick(self) -> None:
        """Something may have freed capacity: the router hands out what it queued."""
        self._send(self.policy.kick(self.now))

    # -- one backend, Ollama-like
    def _dispatch(self, request: Request, backend: SimBackend, evict: Evictions) -> None:
        self._unload(evict)  # the router unloads its victims right away
        res = backend.residency.get(request.model)
        if res is not None:
            res.last_used = self.now
        if res is not None and res.state == "loaded" and backend.free_slots(request.model):
            self._start(request, backend, res)
            return
        backend.waiting.setdefault(request.model, deque()).append(request)
        if res is None:
            self._cold.add(request.id)
            if request.model not in backend.pending_loads:  # else: join the queued load
                backend.pending_loads.append(request.model)
            self._start_loads(backend.host)
        elif res.state == "loading":
            self._cold.add(request.id)

    def _start(self, request: Request, backend: SimBackend, res: Residency) -> None:
        hw = self.fleet.hardware
        res.in_flight += 1
        first = self.now + request.prompt_tokens * hw.prefill_s_per_token(res.size_mb)
        done = first + request.output_tokens * hw.decode_s_per_token(res.size_mb)
        self._started[request.id] = (backend.name, first)
        self._schedule(done, FINISH, (request, backend.name))

    def _finish(self, request: Request, backend_name: str) -> None:
        backend = self.fleet.by_name[backend_name]
        res = backend.residency[request.model]
        res.in_flight -= 1
        res.last_used = self.now
        _, first = self._started.pop(request.id)
        self._served.append(
            Served(request, backend_name, first, self.now, request.id in self._cold)
        )
        self._note("finish", f"{request.id}@{backend_name}")
        self.policy.finished(request, backend_name, self.now)
        self._fill_slots(backend, res)
        self._arm_keep_alive(backend, res)
        self._kick()
        self._start_loads(backend.host)

    def _fill_slots(self, backend: SimBackend, res: Residency) -> None:
        queue = backend.waiting.get(res.model)
        while queue and res.in_flight < backend.model_slots(res.model):
            self._start(queue.popleft(), backend, res)
        if queue is not None and not queue:
            del backend.waiting[res.model]

    def _start_loads(self, host: str) -> None:
        for backend in self.fleet.backends:
            if backend.host == host and backend.loading_now is None and backend.pending_loads:
                self._start_next_load(backend)

    def _start_next_load(self, backend: SimBackend) -> None:
        """Ollama loads one model at a time per server; it makes room by evicting idle
        models and waits (keeps the load pending) while the room is held by busy ones."""
        model = backend.pending_loads[0]
        size = backend.models[model].size_mb
        if not self._make_room(backend, size):
            return  # retried when a request finishes on this host
        backend.pending_loads.popleft()
        if any(model in b.residency for b in self.fleet.backends if b is not backend):
            self._replica_loads += 1
        load_s = self.fleet.hardware.load_s(size)
        self._loads += 1
        self._load_seconds += load_s
        backend.residency[model] = Residency(
            model, size, "loading", self.now + load_s, load_started=self.now
        )
        backend.loading_now = model
        self.policy.load_began(backend.name, model, self.now)
        self._note("load", f"{model}@{backend.name}")
        self._schedule(self.now + load_s, LOAD_DONE, (backend.name, model))

    def _unload(self, victims: Evictions) -> None:
        for owner_name, model in victims:
            owner = self.fleet.by_name.get(owner_name)
            res = owner.residency.get(model) if owner is not None else None
            if owner is None or res is None:
                continue
            if res.state != "loaded" or res.in_flight or owner.waiting.get(model):
                raise SimulationError(
                    f"policy {self.policy.name!r} evicted {model!r} on {owner_name!r} "
                    "while it was busy or loading"
                )
            del owner.residency[model]
            self._evictions += 1
            self._note("evict", f"{model}@{owner_name}")

    def _make_room(self, backend: SimBackend, size: int) -> bool:
        host_backends = [b for b in self.fleet.backends if b.host == backend.host]

        def fits() -> bool:
            count_ok = backend.max_loaded is None or len(backend.residency) < backend.max_loaded
            return count_ok and self.fleet.host_free_mb(backend.host) >= size

        if fits():
            return True
        # Least recently used idle models: this backend's own, then (as a router would unload
        # them) the other backends' on the same host.
        victims: list[tuple[SimBackend, Residency]] = []
        for owner in sorted(host_backends, key=lambda b: b is not backend):
            if owner.kind == "openai":
                continue  # the router cannot unload from a plain OpenAI server
            idle = [r for r in owner.residency.values() if r.state == "loaded"]
            victims += [(owner, r) for r in sorted(idle, key=lambda r: r.last_used)]
        for owner, res in victims:
            if fits():
                break
            if res.in_flight or res.state != "loaded" or owner.waiting.get(res.model):
                continue
            if owner is not backend and self.fleet.host_free_mb(backend.host) >= size:
                continue  # only this backend's count cap binds: unloading elsewhere won't help
            if owner.residency.get(res.model) is res:
                del owner.residency[res.model]
                self._evictions += 1
                self._note("evict", f"{res.model}@{owner.name}")
                self.policy.dropped(owner.name, res.model, self.now)
        return fits()

    def _arm_keep_alive(self, backend: SimBackend, res: Residency) -> None:
        if self.keep_alive_s is not None and res.in_flight == 0:
            self._schedule(self.now + self.keep_alive_s, EXPIRE, (backend.name, res, self.now))

    def _expire(self, backend_name: str, res: Residency, idle_since: float) -> None:
        """Ollama's keep_alive / llama-swap's ttl: unload a model idle for that long."""
        backend = self.fleet.by_name[backend_name]
        if backend.residency.get(res.model) is not res or res.in_flight:
            return
        if res.last_used != idle_since or backend.waiting.get(res.model):
            return  # used since: a later expiry event covers it
        del backend.residency[res.model]
        self._note("expire", f"{res.model}@{backend_name}")
        self.policy.dropped(backend_name, res.model, self.now)
        self._kick()
        self._start_loads(backend.host)

    def _load_done(self, backend_name: str, model: str) -> None:
        backend = self.fleet.by_name[backend_name]
        res = backend.residency[model]
        res.state = "loaded"
        res.last_used = self.now
        backend.loading_now = None
        self.policy.load_done(backend_name, model, self.now)
        self._note("load_done", f"{model}@{backend_name}")
        self._fill_slots(backend, res)
        self._arm_keep_alive(backend, res)
        self._kick()
        self._start_loads(backend.host)


# --------------------------------------------------------------------------- offline bounds


def cold_load_bounds(
    trace: Sequence[Request], fleet: SimFleet, integer: bool = False
) -> dict[str, Any]:
    """Lower bounds on cold loads for ``trace`` on ``fleet`` (see ``deploy/bounds.py`` for
    what each assumes), and the Belady reference heuristic.

    ``lp``: the LP relaxation of the pooled problem with no request waiting (None when scipy
    is missing): a bound only for runs in which every request finds its model in VRAM on
    arrival; :func:`summary_with_bound` gives each run the bound for its own waits.
    ``first_touch``: distinct models, a bound for every run; ``belady_reference``: NOT a
    bound. ``integer`` adds ``integer`` (the no-wait integer program's bound at its root
    node, a few seconds more) and ``integer_schedule`` (the best no-wait pooled schedule it
    found: a reference, NOT a bound).
    """
    models = [r.model for r in trace]
    sizes = {m: fleet.model_size(m) for m in set(models)}
    capacity = pooled_capacity(fleet)
    result: dict[str, Any] = {}
    try:
        result["lp"] = bounds.lp_bound(models, sizes, capacity)
        if integer:
            found = bounds.integer_bound(models, sizes, capacity)
            result |= {"integer": found.bound, "integer_schedule": found.schedule}
    except bounds.BoundUnavailable:
        result["lp"] = None
    return result | {
        "first_touch": bounds.first_touch(models),
        "belady_reference": bounds.belady_reference(models, sizes, capacity),
        "capacity_mb": capacity,
    }


def pooled_capacity(fleet: SimFleet) -> float:
    """The whole fleet's VRAM as one pool, as the bounds take it (MB; inf if unknown)."""
    return sum(fleet.host_budget_mb(h) for h in fleet.hosts()) or math.inf


def summary_with_bound(result: SimResult, fleet: SimFleet) -> dict[str, Any]:
    """``result.summary()`` and ``cold_load_bound``: the fewest cold loads of any schedule
    that gives each request this run served its first token no later than this run did, in
    the pooled relaxation of ``deploy/bounds.py`` (the LP with each request's own wait), or
    the first-touch bound without scipy. A bound that holds for this run, whatever its
    policy; "x bound" divides by it.
    """
    summary = result.summary()
    served = sorted(result.served, key=lambda s: s.request.t)
    models = [s.request.model for s in served]
    try:
        bound = bounds.lp_bound(
            models,
            {m: fleet.model_size(m) for m in set(models)},
            pooled_capacity(fleet),
            times=[s.request.t for s in served],
            waits=[max(s.first_token_at - s.request.t, 0.0) for s in served],
        )
    except bounds.BoundUnavailable:
        bound = bounds.first_touch(models)
    return summary | {"cold_load_bound": max(bound, 1)}


# --------------------------------------------------------------------------- comparisons


POLICIES = {
    "modelfleet": RouterPolicy,
    "round-robin": RoundRobin,
    "least-connections": LeastConnections,
    "least-models": LeastModelsPerInstance,
}


def compare(
    fleet_factory: Any,
    trace: Sequence[Request],
    policies: dict[str, Any],
    *,
    keep_alive_s: float | None = None,
    integer_bound: bool = False,
) -> dict[str, Any]:
    """Run every policy on a fresh fleet; add the lower bounds (``integer_bound``: the integer
    program's too, see :func:`cold_load_bounds`). Pure and deterministic."""
    results: dict[str, Any] = {}
    for label, make_policy in policies.items():
        fleet = fleet_factory()
        sim = Simulator(fleet, make_policy(), trace, keep_alive_s=keep_alive_s)
        results[label] = summary_with_bound(sim.run(), fleet)
    return {
        "requests": len(trace),
        "models_in_trace": len({r.model for r in trace}),
        "lower_bound": cold_load_bounds(trace, fleet_factory(), integer=integer_bound),
        "policies": results,
    }


def iter_table(comparison: dict[str, Any]) -> Iterator[str]:
    """A plain-text table of a :func:`compare` result. Each policy's "bound" is the fewest
    cold loads possible if no request waits longer than it did in that policy's run
    (:func:`summary_with_bound`); "x bound" is cold loads over it. The rows below are the
    bounds for runs in which no request waits (the pooled LP and integer program), the
    first-touch bound and the Belady reference."""
    bound = comparison["lower_bound"]
    yield (
        f"{'policy':<30}{'cold loads':>11}{'bound':>7}{'x bound':>9}{'evictions':>10}"
        f"{'ttft p50 s':>11}{'ttft p99 s':>11}{'ttft max s':>11}{'req/s':>8}{'refused':>9}"
    )
    for label, s in comparison["policies"].items():
        yield (
            f"{label:<30}{s['cold_loads']:>11}{s['cold_load_bound']:>7}"
            f"{s['cold_loads'] / s['cold_load_bound']:>9.2f}{s['evictions']:>10}"
            f"{s['ttft_p50_s']:>11.2f}{s['ttft_p99_s']:>11.2f}{s['ttft_max_s']:>11.2f}"
            f"{s['throughput_rps']:>8.3f}{s['rejected']:>9}"
        )
    rows = [
        ("bound, no request waiting (LP)", bound["lp"]),
        *([("bound, no request waiting (IP)", bound["integer"])] if "integer" in bound else []),
        ("bound (first touch)", bound["first_touch"]),
        ("Belady (heuristic, no bound)", bound["belady_reference"]),
    ]
    for label, loads in rows:
        if loads is None:
            yield f"{label:<30}{'n/a':>11}   (needs scipy: pip install 'modelfleet[simulate]')"
        else:
            yield f"{label:<30}{loads:>11}"


# --------------------------------------------------------------------------- access log


def trace_from_access_log(path: str | Path) -> list[Request]:
    """Turn the router's access log (JSON lines, see docs/router.md) into a trace.

    Inference lines carry ``ts`` (wall clock at the end of the request) and ``model``; the
    arrival is ``ts`` minus the request's duration (``duration_s`` or ``duration_ms``) when
    logged. Token counts come from ``prompt_tokens`` / ``completion_tokens`` (or the OpenAI
    ``usage`` object); lines without a model (admin, health, metrics) and ``kind: load``
    lines (an Ollama load-only request) are skipped.
    """
    path = Path(path)
    lines = read_lines(path)
    arrivals: list[tuple[float, str, int, int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SimulationError(f"{where}: not JSON: {exc.msg}") from None
        if not isinstance(raw, dict) or not raw.get("model"):
            continue
        if raw.get("kind", "inference") != "inference":
            continue  # "load": an Ollama load-only request, not traffic to replay
        ts = raw.get("ts")
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            raise SimulationError(f"{where}: access log line without a numeric 'ts'")
        duration = _number(raw, "duration_s") or _number(raw, "duration_ms") / 1000
        usage: dict[str, Any] = raw["usage"] if isinstance(raw.get("usage"), dict) else {}
        prompt = _count(raw, usage, ("prompt_tokens", "prompt_eval_count"), 256)
        output = _count(raw, usage, ("completion_tokens", "output_tokens", "eval_count"), 128)
        request_id = str(raw.get("request_id") or raw.get("id") or f"l{number}")
        arrivals.append((ts - duration, str(raw["model"]), prompt, output, request_id))
    if not arrivals:
        raise SimulationError(f"{path}: no inference requests (lines with a 'model') found")
    arrivals.sort()
    start = arrivals[0][0]
    return [Request(t - start, m, p, o, i) for t, m, p, o, i in arrivals]


def _number(raw: dict[str, Any], key: str) -> float:
    value = raw.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _count(raw: dict[str, Any], usage: dict[str, Any], keys: tuple[str, ...], default: int) -> int:
    for source in (raw, usage):
        for key in keys:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    return default


# --------------------------------------------------------------------------- CLI


def _fleet_config(inventory: str | None, router_config: str | None) -> RouterConfig:
    if bool(inventory) == bool(router_config):
        raise click.UsageError("give exactly one of --inventory or --router-config")
    if router_config:
        from modelfleet.router.config import ConfigError, load_config

        try:
            return load_config(router_config)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    from modelfleet.deploy.inventory import FleetError, load_fleet
    from modelfleet.deploy.plan import PlanError, hardware_from_overrides, plan_fleet

    assert inventory is not None
    try:
        fleet = load_fleet(inventory)
        return plan_fleet(fleet, hardware_from_overrides(fleet)).router_config()
    except (FleetError, PlanError) as exc:
        raise click.ClickException(str(exc)) from None


def _with_policy_knobs(config: RouterConfig, knobs: Sequence[str]) -> RouterConfig:
    """``config`` with each ``KNOB=VALUE`` of ``--set`` applied to its ``policy:`` section.
    Values are read as YAML, as in router.yaml (``30``, ``false``).

    Example: ``_with_policy_knobs(config, ["max_hold_s=30"]).policy.max_hold_s == 30.0``
    """
    updates: dict[str, Any] = {}
    for item in knobs:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KNOB=VALUE", param_hint="--set")
        if key not in PolicyConfig.model_fields:
            known = ", ".join(PolicyConfig.model_fields)
            raise click.BadParameter(
                f"unknown policy knob {key!r} (known: {known})", param_hint="--set"
            )
        try:
            updates[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise click.BadParameter(
                f"{key}: {value!r} is not a value", param_hint="--set"
            ) from None
    if not updates:
        return config
    try:
        knobs_now = PolicyConfig.model_validate(config.policy.model_dump() | updates)
    except pydantic.ValidationError as exc:
        raise click.BadParameter(validation_problems(exc), param_hint="--set") from None
    return config.model_copy(update={"policy": knobs_now})


# rates, durations and bandwidths divide or bound loops: zero or less is a usage error
_POSITIVE = click.FloatRange(min=0, min_open=True)
_NOT_NEGATIVE = click.FloatRange(min=0)


@click.command("simulate")
@click.argument("inventory_file", required=False, type=click.Path(dir_okay=False))
@click.option("--inventory", type=click.Path(dir_okay=False), help="plan this inventory offline")
@click.option("--router-config", type=click.Path(dir_okay=False), help="or use a router.yaml")
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False), help="JSONL trace")
@click.option("--access-log", type=click.Path(dir_okay=False), help="or the router's access log")
@click.option("--synthetic", is_flag=True, help="or a synthetic Zipf trace over the catalog")
@click.option("--seed", default=1, show_default=True, help="for --synthetic")
@click.option(
    "--rate", default=1.0, type=_POSITIVE, show_default=True, help="req/s for --synthetic"
)
@click.option(
    "--duration", default=3600.0, type=_POSITIVE, show_default=True, help="seconds for --synthetic"
)
@click.option(
    "--policy",
    "policy_names",
    multiple=True,
    type=click.Choice(["modelfleet", "round-robin", "least-connections", "least-models", "all"]),
    default=["all"],
    show_default=True,
)
@click.option(
    "--set",
    "knobs",
    multiple=True,
    metavar="KNOB=VALUE",
    help="a router policy knob for the modelfleet row, over router.yaml's policy: section "
    "(e.g. --set max_hold_s=30); repeatable",
)
@click.option("--keep-alive", type=_NOT_NEGATIVE, help="unload after this many idle seconds")
@click.option("--load-gbps", default=HardwareModel.load_gbps, type=_POSITIVE, show_default=True)
@click.option(
    "--load-fixed-s", default=HardwareModel.load_fixed_s, type=_NOT_NEGATIVE, show_default=True
)
@click.option(
    "--mem-bandwidth-gbps",
    default=HardwareModel.mem_bandwidth_gbps,
    type=_POSITIVE,
    show_default=True,
)
@click.option(
    "--integer-bound",
    is_flag=True,
    help="also prove the pooled integer program's bound (tighter than the LP's; a few seconds "
    "per hour of traffic)",
)
@click.option("--save-trace", type=click.Path(dir_okay=False), help="write the trace used")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="write results here")
def simulate_command(
    inventory_file: str | None,
    inventory: str | None,
    router_config: str | None,
    trace_file: str | None,
    access_log: str | None,
    synthetic: bool,
    seed: int,
    rate: float,
    duration: float,
    policy_names: tuple[str, ...],
    knobs: tuple[str, ...],
    keep_alive: float | None,
    load_gbps: float,
    load_fixed_s: float,
    mem_bandwidth_gbps: float,
    integer_bound: bool,
    save_trace: str | None,
    json_out: str | None,
) -> None:
    """What-if: replay a request trace on your fleet, with the router's policy and others.

    Reports cold loads, evictions, time to first token and throughput per policy, and the
    lower bounds on cold loads (LP relaxation, first touch; --integer-bound adds the
    integer program's). See docs/simulate.md.

    The modelfleet row runs with the fleet's policy knobs (the policy: section of
    router.yaml, or the inventory's router settings), changed by --set.

    \b
    modelfleet simulate inventory/example.py --synthetic
    modelfleet simulate --inventory inventory/example.py --trace trace.jsonl
    modelfleet simulate --router-config /etc/modelfleet/router.yaml \\
        --access-log /var/log/modelfleet/access.jsonl --policy modelfleet --set max_hold_s=30
    """
    if inventory_file and inventory and inventory_file != inventory:
        raise click.UsageError(f"two inventories: {inventory_file} and --inventory {inventory}")
    inventory = inventory or inventory_file  # as `modelfleet plan INVENTORY` takes it
    if sum(map(bool, (trace_file, access_log, synthetic))) != 1:
        raise click.UsageError("give exactly one of --trace, --access-log or --synthetic")
    config = _with_policy_knobs(_fleet_config(inventory, router_config), knobs)
    hardware = HardwareModel(
        load_gbps=load_gbps, load_fixed_s=load_fixed_s, mem_bandwidth_gbps=mem_bandwidth_gbps
    )
    try:
        fleet = SimFleet.from_router_config(config, hardware)
        if trace_file:
            trace = read_trace(trace_file)
        elif access_log:
            trace = trace_from_access_log(access_log)
        else:
            spec = TraceSpec(fleet.model_names(), seed=seed, duration_s=duration, rate_rps=rate)
            trace = generate_trace(spec)
        # the names the router would accept for a model (its aliases, ``:latest``) are that model
        known = FleetState(config)
        trace = [replace(r, model=known.resolve(r.model) or r.model) for r in trace]
        unknown = sorted({r.model for r in trace} - set(fleet.model_names()))
        if unknown:
            raise SimulationError(
                f"the trace asks for model(s) the fleet does not serve: {', '.join(unknown)} "
                f"(catalog: {', '.join(sorted(fleet.model_names()))})"
            )
        names = list(POLICIES) if "all" in policy_names else list(dict.fromkeys(policy_names))
        # the modelfleet row with the fleet's own knobs, not the defaults
        chosen: dict[str, Callable[[], Policy]] = {
            name: (lambda: RouterPolicy(config, queue=config.queue))
            if name == "modelfleet"
            else POLICIES[name]
            for name in names
        }
        result = compare(
            lambda: SimFleet.from_router_config(config, hardware),
            trace,
            chosen,
            keep_alive_s=keep_alive,
            integer_bound=integer_bound,
        )
    except SimulationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"fleet {config.fleet or '-'}: {len(fleet.backends)} backends on "
        f"{len(fleet.hosts())} hosts, {fleet.describe()['vram_mb'] / 1024:.0f} GB VRAM, "
        f"{len(fleet.model_names())} models; trace: {len(trace)} requests over "
        f"{trace[-1].t - trace[0].t:.0f} s"
    )
    if "modelfleet" in chosen:
        queue = config.queue
        click.echo(
            f"modelfleet router queue: at most {queue.max_per_model} waiting per model, "
            f"{queue.deadline_s:g} s deadline (queue: in router.yaml); others queue on the backend"
        )
        non_default = config.policy.model_dump(exclude_defaults=True)
        changed = ", ".join(f"{name}={value}" for name, value in non_default.items())
        if changed:
            click.echo(f"modelfleet policy knobs (others default): {changed}")
    for line in iter_table(result):
        click.echo(line)
    # written after the table, so that a path that cannot be written loses no results
    if save_trace:
        with written(save_trace):
            write_trace(trace, save_trace)
    if json_out:
        result["fleet"] = fleet.describe()
        result["policy_config"] = config.policy.model_dump()
        with written(json_out):
            Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
        click.echo(f"wrote {json_out}")


@contextlib.contextmanager
def written(path: str) -> Iterator[None]:
    """Around writing an output file: an OSError is a click error naming the file and why."""
    try:
        yield
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror or exc}") from None


main = simulate_command  # `python -m modelfleet.deploy.simulate` works without the CLI group

if __name__ == "__main__":
    main()
