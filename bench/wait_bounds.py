"""What waiting does to the pooled LP bound (docs/benchmarks.md §2, "What the no-wait bound
bounds").

For each synthetic cell at 0.5 and 1 req/s: the LP bound of ``deploy/bounds.py`` when every
request may wait up to W seconds for its model (W = 0 is the no-wait bound of the main
table), and the bound for the router's own run (each request's wait = its time to first
token there). Then a check of both bounds on random small runs of every policy: how many
make fewer loads than the no-wait bound, and than the bound for their own waits (none may).
Deterministic; under a minute.

    .venv/bin/python -m bench.wait_bounds > bench/results/wait_bounds.md
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from modelfleet.deploy import bounds
from modelfleet.deploy.simulate import (
    POLICIES,
    HardwareModel,
    Request,
    RouterPolicy,
    SimBackend,
    SimFleet,
    SimModel,
    Simulator,
    cold_load_bounds,
    pooled_capacity,
    summary_with_bound,
)

from .routing_quality import fleet_factory, synthetic_trace

WAITS_S = (0.0, 5.0, 10.0, 20.0, 30.0, 60.0)
CELLS = [(seed, rate) for rate in (1.0, 0.5) for seed in (1, 2, 3)]


def main() -> None:
    heads = " | ".join(f"all wait ≤ {w:g} s" for w in WAITS_S)
    print(f"| workload | {heads} | router's longest TTFT s | all wait ≤ that "
          "| each waits ≤ its router TTFT | router cold loads |")  # fmt: skip
    print("|---" + "|---:" * (len(WAITS_S) + 4) + "|")
    for seed, rate in CELLS:
        trace = synthetic_trace(seed, rate, 3600.0)
        fleet = fleet_factory()()
        models = [r.model for r in trace]
        sizes = {m: fleet.model_size(m) for m in set(models)}
        capacity = pooled_capacity(fleet)
        times = [r.t for r in trace]
        result = Simulator(fleet, RouterPolicy(), trace).run()
        run = summary_with_bound(result, fleet)
        longest = max(s.first_token_at - s.request.t for s in result.served)
        uniform = [
            bounds.lp_bound(models, sizes, capacity, times=times, waits=w)
            for w in (*WAITS_S, longest)
        ]
        print(
            f"| synthetic seed {seed}, {rate:g} req/s | "
            + " | ".join(str(b) for b in uniform[:-1])
            + f" | {longest:.1f} | {uniform[-1]} | {run['cold_load_bound']} "
            f"| {run['cold_loads']} |"
        )

    print_random_runs()


def random_runs(traces: int, seed: int) -> Iterator[tuple[list[Request], SimFleet, dict[str, Any]]]:
    """Every policy on ``traces`` random traces of 5-40 requests for 6 models (0.5-2 GB) on two
    hosts of 3 and 2 GB (a 1 GB model loads in 1 s and decodes a token in 1 s): each run's
    trace, fleet and :func:`summary_with_bound`. tests/unit/test_simulator.py checks them too."""
    rng = random.Random(seed)
    for _ in range(traces):
        sizes = {m: rng.choice([512, 1024, 2048]) for m in "abcdef"}
        t, trace = 0.0, []
        for i in range(rng.randint(5, 40)):
            t += rng.choice([0.0, 0.1, 0.3, 1.0, 2.0, 4.0, 20.0])
            model = rng.choice("aaabbccdef")
            trace.append(Request(t, model, 0, rng.randint(1, 5), f"r{i}"))
        slots = rng.choice([1, 2, 4])
        for make in POLICIES.values():
            catalog = {m: SimModel(m, mb) for m, mb in sizes.items()}
            fleet = SimFleet(
                [SimBackend("b1", "b1", 3072, slots, dict(catalog)),
                 SimBackend("b2", "b2", 2048, 1, dict(catalog))],
                HardwareModel(load_gbps=1.0, load_fixed_s=0.0, mem_bandwidth_gbps=1.0),
            )  # fmt: skip
            yield trace, fleet, summary_with_bound(Simulator(fleet, make(), trace).run(), fleet)


def print_random_runs(traces: int = 600, seed: int = 11) -> None:
    runs = below_no_wait = below_own = 0
    for trace, fleet, run in random_runs(traces, seed):
        runs += 1
        below_no_wait += run["cold_loads"] < cold_load_bounds(trace, fleet)["lp"]
        below_own += run["cold_loads"] < run["cold_load_bound"]
    print(
        f"\nRandom small runs: {runs} ({traces} traces x {len(POLICIES)} policies); fewer loads "
        f"than the no-wait LP: {below_no_wait}; fewer than the bound for their own waits: "
        f"{below_own}."
    )


if __name__ == "__main__":
    main()
