"""The discrete-event simulator (deploy/simulate.py): traces, event order, policies, bounds."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import pytest

from bench.wait_bounds import random_runs
from modelfleet.deploy.bounds import belady_reference, first_touch, integer_bound, lp_bound
from modelfleet.deploy.simulate import (
    POLICIES,
    HardwareModel,
    LeastConnections,
    LeastModelsPerInstance,
    NextUseDemand,
    Request,
    RoundRobin,
    RouterPolicy,
    SimBackend,
    SimFleet,
    SimModel,
    SimulationError,
    Simulator,
    TraceRates,
    TraceSpec,
    cold_load_bounds,
    generate_trace,
    percentile,
    read_trace,
    summary_with_bound,
    write_trace,
)
from modelfleet.router.config import BackendConfig, ModelEntry, QueueConfig, RouterConfig

# Round numbers: a 1 GB model loads in 1 s and decodes a token in 1 s; requests carry no
# prompt tokens, so the times below are exact.
SIMPLE_HW = HardwareModel(load_gbps=1.0, load_fixed_s=0.0, mem_bandwidth_gbps=1.0)


def fleet(*backends: tuple[str, int, int], models: dict[str, int] | None = None) -> SimFleet:
    """Backends as (name, vram_mb, slots), each on its own host, all serving ``models``."""
    catalog = {name: SimModel(name, mb) for name, mb in (models or {"a": 1024}).items()}
    return SimFleet(
        [SimBackend(name, name, vram, slots, dict(catalog)) for name, vram, slots in backends],
        SIMPLE_HW,
    )


def req(t: float, model: str = "a", out: int = 1, rid: str = "") -> Request:
    return Request(t, model, prompt_tokens=0, output_tokens=out, id=rid or f"{model}{t}")


# --------------------------------------------------------------------------- traces


def test_same_seed_same_trace_and_other_seed_differs():
    spec = TraceSpec(models=[f"m{i}" for i in range(32)], seed=7, duration_s=600)
    assert generate_trace(spec) == generate_trace(spec)
    other = generate_trace(TraceSpec(models=spec.models, seed=8, duration_s=600))
    assert other != generate_trace(spec)


def test_trace_has_zipf_head_and_shift():
    models = [f"m{i}" for i in range(32)]
    spec = TraceSpec(models=models, seed=3, duration_s=4000, rate_rps=2.0, bursts=0)
    trace = generate_trace(spec)
    before = Counter(r.model for r in trace if r.t < 2000)
    after = Counter(r.model for r in trace if r.t >= 2000)
    top_before = before.most_common(1)[0]
    # Zipf s=1.1 over 32 models: the head model takes ~24 % of requests.
    assert top_before[1] > 0.15 * sum(before.values())
    assert before.most_common(3) != after.most_common(3)
    assert [r.t for r in trace] == sorted(r.t for r in trace)
    assert len({r.id for r in trace}) == len(trace)


def test_bursts_add_requests_for_one_model_in_a_short_span():
    models = [f"m{i}" for i in range(32)]
    quiet = generate_trace(TraceSpec(models=models, seed=5, duration_s=600, bursts=0))
    bursty = generate_trace(
        TraceSpec(models=models, seed=5, duration_s=600, bursts=1, burst_requests=50)
    )
    assert len(bursty) == len(quiet) + 50


def test_trace_round_trips_through_jsonl(tmp_path):
    trace = [Request(0.5, "a", 10, 20, "x"), Request(1.25, "b", 1, 2)]
    path = tmp_path / "trace.jsonl"
    write_trace(trace, path)
    assert read_trace(path) == trace


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('{"t": 1}', "'model' must be a non-empty string"),
        ('{"t": -1, "model": "a"}', "'t' must be a number"),
        ('{"t": 1, "model": "a", "output_tokens": 1.5}', "'output_tokens' must be an integer"),
        ('{"t": 1, "model": "a", "colour": "red"}', "unknown key(s) ['colour']"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_bad_trace_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"t": 0, "model": "a"}) + "\n" + line + "\n")
    with pytest.raises(SimulationError) as err:
        read_trace(path)
    assert f"{path}:2" in str(err.value)
    assert message in str(err.value)


def test_empty_trace_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("# nothing\n\n")
    with pytest.raises(SimulationError, match="no requests"):
        read_trace(path)


# --------------------------------------------------------------------------- event order


def test_one_cold_request_timeline():
    result = Simulator(fleet(("b1", 4096, 1)), RoundRobin(), [req(0.0, out=3)]).run()
    (served,) = result.served
    assert served.first_token_at == 1.0  # the 1 s load
    assert served.finished_at == 4.0  # + 3 tokens x 1 s
    assert served.cold
    assert result.loads == 1


def test_slot_freed_at_an_instant_serves_the_arrival_at_that_instant():
    # Request 1 occupies the only slot from t=1 (after the load) until t=3; request 2
    # arrives at exactly t=3. The finish runs first, so request 2 starts at once.
    trace = [req(0.0, out=2, rid="r1"), req(3.0, out=1, rid="r2")]
    sim = Simulator(fleet(("b1", 4096, 1)), RoundRobin(), trace, record_events=True)
    result = sim.run()
    kinds = [(what, detail) for _, what, detail in result.events]
    assert kinds.index(("finish", "r1@b1")) < kinds.index(("arrival", "r2"))
    second = next(s for s in result.served if s.request.id == "r2")
    assert not second.cold
    assert second.first_token_at == 3.0


def test_requests_queue_for_a_busy_slot_in_arrival_order():
    trace = [req(0.0, out=5, rid="r1"), req(0.1, rid="r2"), req(0.2, rid="r3")]
    result = Simulator(fleet(("b1", 4096, 1)), RoundRobin(), trace).run()
    order = [s.request.id for s in sorted(result.served, key=lambda s: s.first_token_at)]
    assert order == ["r1", "r2", "r3"]
    assert result.loads == 1  # r2 and r3 joined the one load


def test_eviction_makes_room_lru_first():
    # 2 GB of VRAM, three 1 GB models: c evicts a, the least recently used.
    f = fleet(("b1", 2048, 1), models={"a": 1024, "b": 1024, "c": 1024})
    trace = [req(0.0, "a"), req(10.0, "b"), req(20.0, "c"), req(30.0, "b")]
    sim = Simulator(f, RoundRobin(), trace, record_events=True)
    result = sim.run()
    assert [d for _, w, d in result.events if w == "evict"] == ["a@b1"]
    assert result.loads == 3  # b stayed resident


def test_keep_alive_unloads_an_idle_model():
    trace = [req(0.0), req(100.0)]
    kept = Simulator(fleet(("b1", 4096, 1)), RoundRobin(), trace).run()
    expired = Simulator(fleet(("b1", 4096, 1)), RoundRobin(), trace, keep_alive_s=30).run()
    assert (kept.loads, expired.loads) == (1, 2)


def test_unknown_model_in_trace_is_named():
    with pytest.raises(SimulationError, match="'zzz' is in no backend's catalog"):
        Simulator(fleet(("b1", 4096, 1)), RoundRobin(), [req(0.0, "zzz")])


# --------------------------------------------------------------------------- baselines


def test_round_robin_loads_the_model_on_every_backend():
    f = fleet(("b1", 4096, 4), ("b2", 4096, 4))
    result = Simulator(f, RoundRobin(), [req(t) for t in (0.0, 10.0, 20.0, 30.0)]).run()
    assert result.loads == 2
    assert Counter(s.backend for s in result.served) == {"b1": 2, "b2": 2}
    assert result.replica_loads == 1


def test_least_connections_prefers_the_idle_backend():
    f = fleet(("b1", 4096, 4), ("b2", 4096, 4))
    result = Simulator(f, LeastConnections(), [req(0.0, out=100), req(1.0), req(500.0)]).run()
    backends = [s.backend for s in sorted(result.served, key=lambda s: s.request.t)]
    assert backends == ["b1", "b2", "b1"]  # the third finds both idle: first listed


def test_least_models_maps_new_models_to_the_emptiest_instance():
    f = fleet(("b1", 8192, 1), ("b2", 8192, 1), models={"a": 1024, "b": 1024, "c": 1024})
    policy = LeastModelsPerInstance()
    Simulator(f, policy, [req(0.0, "a"), req(10.0, "b"), req(20.0, "c"), req(30.0, "a")]).run()
    assert policy.mapping == {"a": "b1", "b": "b2", "c": "b1"}


def test_router_policy_joins_a_load_instead_of_loading_twice():
    f = fleet(("b1", 4096, 4), ("b2", 4096, 4))
    result = Simulator(f, RouterPolicy(), [req(0.0), req(0.1), req(0.2)]).run()
    assert result.loads == 1
    assert result.decisions == {"join-load": 2, "load-fits": 1}


def test_router_policy_goes_where_the_model_is_resident():
    f = fleet(("b1", 4096, 1), ("b2", 4096, 1), models={"a": 1024, "b": 1024})
    trace = [req(0.0, "a"), req(0.5, "b"), req(10.0, "b"), req(11.0, "a")]
    result = Simulator(f, RouterPolicy(), trace).run()
    assert result.loads == 2
    by_model = {s.request.model: s.backend for s in result.served}
    assert by_model["a"] != by_model["b"]  # the second load went to the empty host


def test_next_use_demand_is_one_over_the_time_to_the_next_request():
    demand = NextUseDemand([req(0.0, "a"), req(10.0, "a"), req(4.0, "b")])
    assert demand.rate("a", 5.0) == pytest.approx(0.2)  # a again at 10 s
    assert demand.rate("a", 9.9) == pytest.approx(2.0)  # due at once: capped at 2 req/s
    assert demand.rate("b", 5.0) == 0.0  # never asked for again
    demand.record("a", 5.0)  # learns nothing
    assert demand.rates(5.0) == {"a": pytest.approx(0.2), "b": 0.0}


def test_trace_rates_are_the_rates_the_trace_was_drawn_from():
    spec = TraceSpec(models=["a", "b", "c"], seed=3, duration_s=600.0, rate_rps=2.0,
                     bursts=1, burst_requests=40, burst_span_s=30.0)  # fmt: skip
    rates = TraceRates(spec)
    ((start, burst_model),) = rates.popularity.bursts
    trace = generate_trace(spec)
    in_burst = [r for r in trace if r.model == burst_model and start <= r.t <= start + 30.0]
    assert len(in_burst) >= 40  # the burst found is the one in the trace
    before, after = rates.rates(10.0), rates.rates(590.0)
    quiet = 10.0 if not start <= 10.0 <= start + 30.0 else 590.0
    assert sum(rates.rates(quiet).values()) == pytest.approx(2.0)  # outside the burst
    assert rates.rate(burst_model, start + 1.0) >= 40 / 30.0
    # outside a burst the most popular model gets the Zipf head's share of 2 req/s
    head = max(before.values()) if quiet == 10.0 else max(after.values())
    assert head == pytest.approx(2.0 / sum(1 / k**1.1 for k in (1, 2, 3)))
    rates.record("a", 5.0)  # learns nothing
    assert rates.rates(10.0) == before


def test_next_use_oracle_evicts_the_model_not_needed_again():
    # Room for two 1 GB models. a is hot early and never asked for again; b once, and again
    # soon after c arrives. The decayed demand keeps a (three recent requests) and evicts b,
    # which then comes back: 4 loads. Knowing the next use, the router's rules evict a: 3.
    f = fleet(("b1", 2048, 1), models={"a": 1024, "b": 1024, "c": 1024})
    trace = [req(0.0, "a"), req(5.0, "a"), req(10.0, "a"), req(15.0, "b"), req(20.0, "c"),
             req(25.0, "b")]  # fmt: skip
    decayed = Simulator(f, RouterPolicy(), trace, record_events=True).run()
    f = fleet(("b1", 2048, 1), models={"a": 1024, "b": 1024, "c": 1024})
    oracle = Simulator(f, RouterPolicy(demand=NextUseDemand(trace)), trace, record_events=True)
    clairvoyant = oracle.run()
    assert next(d for _, w, d in decayed.events if w == "evict") == "b@b1"
    assert decayed.loads == 4
    assert [d for _, w, d in clairvoyant.events if w == "evict"] == ["a@b1"]
    assert clairvoyant.loads == 3


def test_the_router_serves_every_request_on_random_fleets():
    # Liveness: whatever the fleet (hosts shared by backends, every backend kind, max_loaded,
    # per-model slots), knobs, queue limits and keep-alive, the router's policy and bookkeeping
    # never leave a request waiting for good (the simulator raises if one is left at the end).
    rng = random.Random(3)
    for _ in range(300):
        sizes = {f"m{i}": rng.choice([512, 1024, 2048, 3072]) for i in range(rng.randint(2, 6))}
        backends = []
        for j in range(rng.randint(1, 4)):
            vram = rng.choice([2048, 3072, 4096])
            catalog = {
                m: SimModel(m, mb, rng.choice([None, 1, 2]))
                for m, mb in sizes.items()
                if mb <= vram and rng.random() < 0.8
            }
            if catalog:
                backends.append(
                    SimBackend(f"b{j}", rng.choice("xyz"), vram, rng.choice([1, 2, 4]), catalog,
                               max_loaded=rng.choice([None, 1, 2]),
                               kind=rng.choice(["ollama", "llama-swap", "llama-server"]))
                )  # fmt: skip
        if not backends:
            continue
        f = SimFleet(backends, SIMPLE_HW)
        served = sorted({m for b in backends for m in b.models})
        t, trace = 0.0, []
        for i in range(rng.randint(3, 40)):
            t += rng.choice([0.0, 0.05, 0.3, 1.0, 3.0, 10.0, 40.0])
            trace.append(req(t, rng.choice(served), out=rng.randint(1, 8), rid=f"r{i}"))
        config = f.to_router_config()
        knobs = {"max_hold_s": rng.choice([0.0, 5.0, 20.0]), "scale_out": rng.random() < 0.7,
                 "headroom_mb": rng.choice([0, 256])}  # fmt: skip
        config = config.model_copy(update={"policy": config.policy.model_copy(update=knobs)})
        queue = rng.choice([None, QueueConfig(max_per_model=3, deadline_s=15.0)])
        keep_alive = rng.choice([None, 3.0, 30.0])
        result = Simulator(
            f, RouterPolicy(config, queue=queue), trace, keep_alive_s=keep_alive
        ).run()
        assert len(result.served) + sum(result.rejected.values()) == len(trace)


# --------------------------------------------------------------------------- offline bound


def test_bounds_on_a_hand_checked_sequence():
    # Room for two 1 GB models. a b c a b: Belady's C evicts B (next used later than A), then
    # A hits and B misses: 4 loads; LRU would do 5. The LP relaxation proves 4 here: at c,
    # a and b cannot both stay, so one of the two reuses costs a load.
    f = fleet(("b1", 2048, 1), models={"a": 1024, "b": 1024, "c": 1024})
    trace = [req(float(i), m) for i, m in enumerate("abcab")]
    bound = cold_load_bounds(trace, f)
    assert (bound["lp"], bound["first_touch"], bound["belady_reference"]) == (4, 3, 4)
    assert Simulator(f, RoundRobin(), trace).run().loads == 5


def _pooled_optimum(models: str, sizes: dict[str, int], capacity: int) -> int:
    """Exact fewest loads on one pooled cache (dynamic programming over resident sets)."""
    states = {frozenset[str](): 0}
    for model in models:
        after: dict[frozenset[str], int] = {}
        for resident, loads in states.items():
            cost = loads + (model not in resident)
            others = sorted(resident - {model})
            for k in range(len(others) + 1):
                for keep in itertools.combinations(others, k):
                    kept = frozenset(keep) | {model}
                    if sum(sizes[m] for m in kept) <= capacity and after.get(kept, 10**9) > cost:
                        after[kept] = cost
        states = after
    return min(states.values())


def test_lp_bound_is_never_above_the_exact_optimum():
    rng = random.Random(0)
    for _ in range(150):
        sizes = {m: rng.choice([1, 2, 3]) for m in "abcd"}
        models = "".join(rng.choice("abcd") for _ in range(9))
        bound = lp_bound(list(models), sizes, 4)
        assert first_touch(models) <= bound <= _pooled_optimum(models, sizes, 4), (models, sizes)


def test_integer_bound_lies_between_the_lp_and_the_exact_optimum():
    rng = random.Random(1)
    for _ in range(60):
        sizes = {m: rng.choice([1, 2, 3]) for m in "abcd"}
        models = list("".join(rng.choice("abcd") for _ in range(9)))
        exact = _pooled_optimum("".join(models), sizes, 4)
        root = integer_bound(models, sizes, 4)
        assert lp_bound(models, sizes, 4) <= root.bound <= exact, (models, sizes)
        assert root.schedule is None or root.schedule >= exact  # a schedule, so never below
        # searched to the end, the bound is the optimum and the schedule achieves it
        assert integer_bound(models, sizes, 4, node_limit=10_000) == (exact, exact)


def test_integer_bound_closes_the_lps_half_kept_models():
    # a b a b with room for one of the two: the LP keeps half of each between its requests
    # (3 loads); kept whole or not at all, one reuse must go (4, the true optimum)
    models, sizes = list("abab"), {"a": 10, "b": 10}
    assert lp_bound(models, sizes, 15) == 3
    assert integer_bound(models, sizes, 15) == (4, 4)
    f = fleet(("b1", 15, 1), models=sizes)
    bound = cold_load_bounds([req(float(i), m) for i, m in enumerate(models)], f, integer=True)
    assert (bound["lp"], bound["integer"], bound["integer_schedule"]) == (3, 4, 4)


def test_runs_whose_requests_wait_can_beat_the_no_wait_bounds():
    # a b a b a b a tenth of a second apart, room for one model. Served in arrival order with
    # nothing waiting, every request is a load (6; the LP's relaxation 4). But a load takes a
    # second here, so requests wait: every policy serves the a's, then the b's, loading twice.
    sizes = {"a": 1024, "b": 1024}
    trace = [req(0.1 * i, m) for i, m in enumerate("ababab")]
    no_wait = cold_load_bounds(trace, fleet(("b1", 1536, 4), models=sizes), integer=True)
    assert (no_wait["lp"], no_wait["integer"], no_wait["first_touch"]) == (4, 6, 2)
    for make in POLICIES.values():
        f = fleet(("b1", 1536, 4), models=sizes)
        run = summary_with_bound(Simulator(f, make(), trace).run(), f)
        assert run["cold_loads"] == 2 < no_wait["lp"], run
        assert run["cold_load_bound"] == 2  # the bound for its waits holds
        assert run["ttft_max_s"] > 0


def test_the_bound_for_a_runs_waits_holds_for_every_policy():
    # 40 traces x the four policies of the random runs bench/wait_bounds.py reports on (600)
    below_no_wait = 0
    for trace, f, run in random_runs(traces=40, seed=0):
        assert first_touch([r.model for r in trace]) <= run["cold_load_bound"]
        assert run["cold_load_bound"] <= run["cold_loads"], (trace, run)
        below_no_wait += run["cold_loads"] < cold_load_bounds(trace, f)["lp"]
    assert below_no_wait  # runs that the no-wait bound does not bound: their requests waited


def test_the_bound_falls_as_the_wait_grows_and_is_the_no_wait_lp_at_zero():
    rng = random.Random(2)
    for _ in range(30):
        sizes = {m: rng.choice([1, 2, 3]) for m in "abcd"}
        models = [rng.choice("abcd") for _ in range(12)]
        times = sorted(rng.uniform(0, 30) for _ in models)
        bounds = [lp_bound(models, sizes, 4, times=times, waits=w) for w in (0, 1, 3, 10)]
        assert bounds[0] == lp_bound(models, sizes, 4)
        assert bounds == sorted(bounds, reverse=True)
        assert bounds[-1] >= first_touch(models)


def test_a_bound_with_waiting_needs_the_times():
    with pytest.raises(ValueError, match="times"):
        lp_bound(["a", "b", "a"], {"a": 1, "b": 1}, 1, waits=5)
    with pytest.raises(ValueError, match="in order"):
        lp_bound(["a", "b", "a"], {"a": 1, "b": 1}, 1, times=[2, 1, 3], waits=5)
    with pytest.raises(ValueError, match="one per request"):
        lp_bound(["a", "b", "a"], {"a": 1, "b": 1}, 1, times=[1, 2, 3], waits=[1, 2])


def test_belady_with_sizes_is_a_heuristic_not_a_bound():
    # 4 units pooled; a and d take 3, c takes 1. Furthest-next-use loads 7 times, the best
    # schedule 6 (found by exhaustive search), and the LP proves 6.
    sizes = {"a": 3, "c": 1, "d": 3}
    models = "ddcaaadadc"
    assert belady_reference(list(models), sizes, 4) == 7
    assert _pooled_optimum(models, sizes, 4) == 6
    assert lp_bound(list(models), sizes, 4) == 6


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile([], 50)) == (50, 99, 0)


# --------------------------------------------------------------------------- fleet input


def test_fleet_from_router_config_needs_model_sizes():
    config = RouterConfig(
        backends=[BackendConfig(name="gpu-01", url="http://10.0.0.1:11434", vram_mb=8192)]
    )
    with pytest.raises(SimulationError, match="'gpu-01' lists no models"):
        SimFleet.from_router_config(config)


def test_fleet_from_router_config_rejects_a_model_too_big():
    config = RouterConfig(
        backends=[
            BackendConfig(
                name="gpu-01",
                url="http://10.0.0.1:11434",
                vram_mb=8192,
                models=[ModelEntry(name="big", size_mb=9000)],
            )
        ]
    )
    with pytest.raises(SimulationError, match="'gpu-01', model 'big': 9000 MB does not fit"):
        SimFleet.from_router_config(config)


def test_fleet_from_router_config_shares_host_vram():
    entry = ModelEntry(name="m", size_mb=1000, kv_mb=24)
    config = RouterConfig(
        backends=[
            BackendConfig(name="ollama", url="http://h:1", host="h", vram_mb=8192, models=[entry]),
            BackendConfig(name="swap", url="http://h:2", host="h", vram_mb=8192, models=[entry]),
        ]
    )
    f = SimFleet.from_router_config(config)
    assert f.hosts() == ["h"]
    assert f.host_budget_mb("h") == 8192
    assert f.model_size("m") == 1024


@pytest.mark.parametrize("make_policy", [RoundRobin, RouterPolicy])
def test_a_models_own_slots_limit_it_as_the_router_does(make_policy):
    # The backend runs 4 requests at once, but "big" was planned with one slot (llama-server
    # --parallel 1): the second request for it waits for the first, in the router's
    # bookkeeping (RouterPolicy) as on the backend (RoundRobin leaves queueing to it).
    entries = [ModelEntry(name="big", size_mb=1024, slots=1), ModelEntry(name="a", size_mb=1024)]
    config = RouterConfig(
        backends=[
            BackendConfig(name="b1", url="http://b1:1", vram_mb=4096, slots=4, models=entries)
        ]
    )
    f = SimFleet.from_router_config(config, SIMPLE_HW)
    assert f.by_name["b1"].model_slots("big") == 1
    assert f.by_name["b1"].model_slots("a") == 4
    trace = [req(0.0, "big", out=3, rid="r1"), req(0.0, "big", out=1, rid="r2")]
    trace += [req(5.0, "a", out=3, rid="r3"), req(5.0, "a", out=1, rid="r4")]
    served = {s.request.id: s for s in Simulator(f, make_policy(), trace).run().served}
    assert served["r1"].first_token_at == 1.0  # after the 1 s load
    assert served["r2"].first_token_at == served["r1"].finished_at == 4.0
    assert served["r3"].first_token_at == served["r4"].first_token_at  # four slots: together


def test_the_router_queue_refuses_beyond_its_limit_and_gives_up_at_its_deadline():
    # One backend, one slot. r1 loads "a" and holds the slot until t=11 (1 s load, 10 tokens);
    # r2 waits in the router's queue, r3 finds it full (one waiting at most) and is refused;
    # r2 gives up 2 s after it arrived. Without limits (queue=None) all three are served.
    trace = [req(0.0, out=10, rid="r1"), req(0.5, rid="r2"), req(0.6, rid="r3")]
    limits = QueueConfig(max_per_model=1, deadline_s=2.0)
    sim = Simulator(fleet(("b1", 4096, 1)), RouterPolicy(queue=limits), trace, record_events=True)
    result = sim.run()
    assert [s.request.id for s in result.served] == ["r1"]
    assert result.rejected == {"queue-full": 1, "deadline": 1}
    refusals = [(t, detail) for t, what, detail in result.events if what == "reject"]
    assert refusals == [(0.6, "r3 (queue-full)"), (2.5, "r2 (deadline)")]
    summary = result.summary()
    assert (summary["requests"], summary["rejected"]) == (1, 2)

    unbounded = Simulator(fleet(("b1", 4096, 1)), RouterPolicy(), trace).run()
    assert len(unbounded.served) == 3 and unbounded.rejected == {}


def test_a_held_request_is_decided_again_when_its_hold_runs_out():
    # h1 holds "hot" (asked four times, busy until t=11), h2 is busy with "cold" for 200 s.
    # "new" (t=10) has to evict hot: without a hold as soon as hot is idle (t=11, + 2 s load);
    # with max_hold_s=5 it waits until t=15 (cold might free cheaper room), then evicts hot
    # anyway. Nothing else happens at t=15: the hold's own wake-up decides.
    f = fleet(("h1", 2048, 1), ("h2", 2048, 1), models={"hot": 2048, "cold": 2048, "new": 2048})
    trace = [req(0.0, "hot"), req(0.1, "cold", out=100)]
    trace += [req(t, "hot") for t in (5.0, 6.0, 7.0)] + [req(10.0, "new")]
    ttft = {}
    for hold in (0.0, 5.0):
        config = f.to_router_config()
        config = config.model_copy(
            update={"policy": config.policy.model_copy(update={"max_hold_s": hold})}
        )
        fresh = fleet(("h1", 2048, 1), ("h2", 2048, 1), models={"hot": 2048, "cold": 2048,
                                                                 "new": 2048})  # fmt: skip
        result = Simulator(fresh, RouterPolicy(config), trace).run()
        served = {s.request.id: s for s in result.served}
        ttft[hold] = served["new10.0"].first_token_at - 10.0
        assert served["new10.0"].backend == "h1"
    assert ttft == {0.0: pytest.approx(3.0), 5.0: pytest.approx(7.0)}
