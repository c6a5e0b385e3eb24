"""Routing quality: the router's policy against the usual alternatives, in the simulator.

Replays deterministic synthetic traces (Zipf popularity over 32 models, bursts, a shift of
the popular set half-way) on a modeled six-host fleet and compares cold loads, evictions,
time to first token and throughput with round-robin, least-connections, PolyLlama's
least-models-per-instance and the offline Belady bound.

    .venv/bin/python -m bench.routing_quality --out bench/results/routing_quality.json

Scenarios: seeds 1-3 at each rate (1, 0.5, 2 req/s plus bursts), with models kept loaded
until evicted and with a 300 s keep-alive (Ollama's default). The main case (first rate,
no keep-alive) also gets a diagnosis: online references (the whole fleet's VRAM as one LRU
cache, and as one cache evicting by the router's demand measure), how many of the policy's
chosen victims were not needed, and a clearly labelled what-if without them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelfleet.deploy.simulate import (
    POLICIES,
    Choice,
    HardwareModel,
    Request,
    RouterPolicy,
    SimFleet,
    Simulator,
    TraceSpec,
    compare,
    generate_trace,
    iter_table,
)
from modelfleet.router import policy
from modelfleet.router.config import BackendConfig, ModelEntry, RouterConfig

# name, weights + KV cache in GB: a spread from 1B to 70B-class models at Q4.
CATALOG_GB = [
    ("llama3.2-1b", 1.5),
    ("gemma3-1b", 1.5),
    ("qwen3-1.7b", 2.0),
    ("llama3.2-3b", 3.0),
    ("phi4-mini", 3.5),
    ("qwen3-4b", 4.0),
    ("gemma3-4b", 4.5),
    ("mistral-7b", 5.5),
    ("qwen2.5-7b", 6.0),
    ("llama3.1-8b", 6.5),
    ("qwen3-8b", 6.5),
    ("granite3.3-8b", 7.0),
    ("deepseek-r1-8b", 7.0),
    ("gemma3-12b", 10.0),
    ("mistral-nemo-12b", 10.0),
    ("phi4-14b", 11.0),
    ("qwen3-14b", 11.5),
    ("deepseek-r1-14b", 11.5),
    ("gpt-oss-20b", 15.0),
    ("mistral-small-24b", 17.0),
    ("devstral-24b", 17.0),
    ("gemma3-27b", 20.0),
    ("qwen3-30b-a3b", 21.0),
    ("qwen2.5-coder-32b", 23.0),
    ("qwen3-32b", 23.0),
    ("deepseek-r1-32b", 23.0),
    ("aya-expanse-32b", 23.0),
    ("command-r-35b", 26.0),
    ("llama3.3-70b", 45.0),
    ("qwen2.5-72b", 50.0),
    ("deepseek-r1-70b", 45.0),
    ("gpt-oss-120b", 66.0),
]

# host, VRAM GB, slots: two H100-class, two 48 GB, two 24 GB hosts.
HOSTS = [
    ("gpu-01", 80, 4),
    ("gpu-02", 80, 4),
    ("gpu-03", 48, 4),
    ("gpu-04", 48, 4),
    ("gpu-05", 24, 2),
    ("gpu-06", 24, 2),
]


def bench_router_config() -> RouterConfig:
    """The modeled fleet, written as the router.yaml the deploy would render for it."""
    backends = []
    for index, (host, vram_gb, slots) in enumerate(HOSTS):
        vram_mb = vram_gb * 1024
        models = [
            ModelEntry(name=name, size_mb=int(size_gb * 1024))
            for name, size_gb in CATALOG_GB
            if size_gb * 1024 <= vram_mb * 0.95  # the planner keeps headroom
        ]
        backends.append(
            BackendConfig(
                name=host,
                url=f"http://10.0.0.{index + 1}:11434",
                host=host,
                vram_mb=vram_mb,
                slots=slots,
                models=models,
            )
        )
    return RouterConfig(backends=backends, fleet="bench-six-hosts")


def policies() -> dict[str, Any]:
    return {
        "modelfleet": POLICIES["modelfleet"],
        "round-robin": POLICIES["round-robin"],
        "least-connections": POLICIES["least-connections"],
        "least-models (PolyLlama)": POLICIES["least-models"],
    }


# --------------------------------------------------------------------------- online references


def pooled_online_loads(trace: list[Request], fleet: SimFleet) -> dict[str, int]:
    """Cold loads of two *online* caches of the whole fleet's VRAM as one pool (no hosts, no
    concurrency): LRU, and the router's own eviction rule (lowest decayed demand first, as
    ``router.policy.DemandTracker`` measures it). How close can anything online get to Belady?
    """
    sizes = {m: fleet.model_size(m) for m in fleet.model_names()}
    capacity = sum(fleet.host_budget_mb(h) for h in fleet.hosts())
    lru: OrderedDict[str, None] = OrderedDict()
    lfu: dict[str, None] = {}
    demand = policy.DemandTracker(half_life_s=300.0)
    loads = {"pooled_lru": 0, "pooled_demand": 0}
    used = {"pooled_lru": 0, "pooled_demand": 0}
    for r in trace:
        demand.record(r.model, r.t)
        if r.model in lru:
            lru.move_to_end(r.model)
        else:
            loads["pooled_lru"] += 1
            while used["pooled_lru"] + sizes[r.model] > capacity:
                victim, _ = lru.popitem(last=False)
                used["pooled_lru"] -= sizes[victim]
            lru[r.model] = None
            used["pooled_lru"] += sizes[r.model]
        if r.model not in lfu:
            loads["pooled_demand"] += 1
            while used["pooled_demand"] + sizes[r.model] > capacity:
                victim = min(lfu, key=lambda m: demand.rate(m, r.t))
                used["pooled_demand"] -= sizes[victim]
                del lfu[victim]
            lfu[r.model] = None
            used["pooled_demand"] += sizes[r.model]
    return loads


class EvictionProbe(RouterPolicy):
    """The router's policy, unchanged, plus a count of how many of the models it chose to
    evict were not needed to make room (the rest of the set alone would have freed enough)."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions = self.victims = self.not_needed = 0

    def choose(self, request: Request, fleet: SimFleet, now: float) -> Choice | None:
        choice = super().choose(request, fleet, now)
        if choice is not None and choice.evict:
            self.decisions += 1
            self.victims += len(choice.evict)
            self.not_needed += len(_unneeded(choice, request, fleet))
        return choice


class TrimmedEvictions(RouterPolicy):
    """What-if, NOT the router: the same decisions with the unneeded victims left loaded."""

    name = "modelfleet, trimmed evictions (what-if)"

    def choose(self, request: Request, fleet: SimFleet, now: float) -> Choice | None:
        choice = super().choose(request, fleet, now)
        if choice is None or not choice.evict:
            return choice
        drop = set(_unneeded(choice, request, fleet))
        return replace(choice, evict=tuple(v for v in choice.evict if v not in drop))


def _unneeded(choice: Choice, request: Request, fleet: SimFleet) -> list[tuple[str, str]]:
    """Victims (latest chosen first) whose eviction the load does not need."""
    host = fleet.by_name[choice.backend].host
    pending = sum(
        b.models[m].size_mb for b in fleet.backends if b.host == host for m in b.pending_loads
    )
    sizes = {v: fleet.by_name[v[0]].residency[v[1]].size_mb for v in choice.evict}
    room = fleet.host_free_mb(host) - pending + sum(sizes.values())
    need = fleet.model_size(request.model)
    unneeded = []
    for victim in reversed(choice.evict):
        if room - sizes[victim] >= need:
            room -= sizes[victim]
            unneeded.append(victim)
    return unneeded


# --------------------------------------------------------------------------- scenarios


def trace_for(seed: int, rate: float, duration: float) -> list[Request]:
    spec = TraceSpec(
        models=[name for name, _ in CATALOG_GB], seed=seed, duration_s=duration, rate_rps=rate
    )
    return generate_trace(spec)


def run_scenario(
    seed: int, rate: float, duration: float, keep_alive: float | None, diagnose: bool
) -> dict[str, Any]:
    config = bench_router_config()
    hardware = HardwareModel()

    def fleet() -> SimFleet:
        return SimFleet.from_router_config(config, hardware)

    trace = trace_for(seed, rate, duration)
    result = compare(fleet, trace, policies(), keep_alive_s=keep_alive)
    result |= {"seed": seed, "rate_rps": rate, "duration_s": duration, "keep_alive_s": keep_alive}
    if diagnose:
        probe = EvictionProbe()
        Simulator(fleet(), probe, trace, keep_alive_s=keep_alive).run()
        trimmed = Simulator(fleet(), TrimmedEvictions(), trace, keep_alive_s=keep_alive).run()
        result["diagnosis"] = {
            "online_references": pooled_online_loads(trace, fleet()),
            "evict_decisions": probe.decisions,
            "victims": probe.victims,
            "victims_not_needed": probe.not_needed,
            "trimmed_evictions_what_if": trimmed.summary(),
        }
    return result


def load_timeline(seed: int, rate: float, duration: float) -> dict[str, list[float]]:
    """Times of every load, per policy, for the cumulative-loads plot."""
    config = bench_router_config()
    trace = trace_for(seed, rate, duration)
    timeline = {}
    for label, make in policies().items():
        sim = Simulator(SimFleet.from_router_config(config), make(), trace, record_events=True)
        events = sim.run().events
        timeline[label] = [round(t, 1) for t, what, _ in events if what == "load"]
    return timeline


def run(seeds: list[int], rates: list[float], duration: float) -> dict[str, Any]:
    scenarios = []
    for keep_alive in (None, 300.0):
        for rate in rates:
            for seed in seeds:
                main_case = keep_alive is None and rate == rates[0]
                result = run_scenario(seed, rate, duration, keep_alive, diagnose=main_case)
                scenarios.append(result)
                ka = "never" if keep_alive is None else f"{keep_alive:.0f} s"
                print(
                    f"\nseed {seed}, {result['requests']} requests, {rate} req/s + bursts, "
                    f"{duration:.0f} s, keep-alive {ka}"
                )
                for line in iter_table(result):
                    print(line)
                if "diagnosis" in result:
                    print(
                        "  diagnosis:",
                        json.dumps(
                            result["diagnosis"]
                            | {
                                "trimmed_evictions_what_if": {
                                    k: result["diagnosis"]["trimmed_evictions_what_if"][k]
                                    for k in ("cold_loads", "ttft_p99_s")
                                }
                            }
                        ),
                    )
    config = bench_router_config()
    return {
        "benchmark": "routing_quality",
        "command": "python -m bench.routing_quality " + " ".join(sys.argv[1:]),
        "fleet": SimFleet.from_router_config(config).describe(),
        "catalog_gb": dict(CATALOG_GB),
        "trace": {"duration_s": duration, "models": len(CATALOG_GB), "spec": repr(TraceSpec(()))},
        "python": platform.python_version(),
        "scenarios": scenarios,
        "timeline": {
            "seed": seeds[0],
            "rate_rps": rates[0],
            **load_timeline(seeds[0], rates[0], duration),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[1.0, 0.5, 2.0],
        help="mean requests/s outside bursts; the first is the main case",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.seeds, args.rates, args.duration)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
