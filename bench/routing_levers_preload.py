"""EXPERIMENT 8 (reverted in the next commit): idle-time preloads. The router alone
on synthetic cells given as SEED:RATE; switches read by router/policy.py in this commit:
MF_PRE_K (load the absent model with the most demand, in idle time, where the eviction it
needs costs less than 1 / MF_PRE_K of its demand; unset: never), MF_PRE_FREE=1 (only into
free VRAM), MF_PRE_MIN (least demand worth a preload, req/s), MF_PRE_TOP (how many of the
most-demanded absent models are tried). Preloads count as cold loads; "asked for" counts
those that served a request before their copy was evicted. Example:

    MF_PRE_K=3 PYTHONPATH=. .venv/bin/python bench/routing_levers_preload.py 1:1 2:1
"""

import sys
import time

from bench.routing_quality import bench_router_config, synthetic_trace
from modelfleet.deploy.simulate import HardwareModel, RouterPolicy, SimFleet, Simulator

OLD = {(1, 1.0): 495, (2, 1.0): 733, (3, 1.0): 510, (1, 0.5): 219, (2, 0.5): 296, (3, 0.5): 286}

for cell in sys.argv[1:]:
    seed, rate = int(cell.split(":")[0]), float(cell.split(":")[1])
    started = time.time()
    config = bench_router_config()
    sim = Simulator(
        SimFleet.from_router_config(config, HardwareModel()),
        RouterPolicy(config),
        synthetic_trace(seed, rate, 3600.0),
        keep_alive_s=None,
        record_events=True,
    )
    result = sim.run()
    preloads = result.decisions.get("preload", 0)
    model_of = {r.id: r.model for r in sim.trace}
    waiting: set[tuple[str, str]] = set()  # (model, backend) preloaded, not asked for yet
    asked = 0
    for _, what, detail in result.events:
        if what == "preload":
            model, backend = detail.split("@")
            waiting.add((model, backend))
        elif what == "route":
            request_id, rest = detail.split("->")
            key = (model_of[request_id], rest.split(" ")[0])
            if key in waiting:
                waiting.discard(key)
                asked += 1
        elif what in ("evict", "expire"):
            model, backend = detail.split("@")
            waiting.discard((model, backend))
    out = result.summary()
    old = OLD.get((seed, rate))
    change = f" ({(out['cold_loads'] / old - 1) * 100:+.0f}% vs before v2)" if old else ""
    print(
        f"{cell} loads {out['cold_loads']}{change} p99 {out['ttft_p99_s']:.1f}"
        f" mean {out['ttft_mean_s']:.2f} preloads {preloads} asked for {asked}"
        f" [{time.time() - started:.0f}s]",
        flush=True,
    )
