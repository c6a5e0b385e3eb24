"""EXPERIMENT (reverted in the next commit): the router alone on synthetic cells, with PolicyConfig
overrides after --; lever switches are the MF_* environment variables read by router/policy.py
and router/bookkeeping.py in this commit. Reference runs of the committed rules change what the
router is given instead: MF_HW (hardware: instant, instant-decode, instant-load, load-x4),
MF_DEMAND (rates: the trace's true rates; switch:SHORT:LONG:Z: a two-timescale estimate) and
MF_FLEET=pooled (one host with the fleet's VRAM and slots). Example:

    MF_HW=instant-decode PYTHONPATH=. .venv/bin/python bench/routing_levers_explore.py 1:1 2:1 3:1 1:0.5 2:0.5 3:0.5
"""

import math
import os
import sys
import time

from bench.routing_quality import (
    CATALOG_GB,
    HOSTS,
    bench_router_config,
    synthetic_spec,
    synthetic_trace,
)
from modelfleet.deploy.simulate import HardwareModel, RouterPolicy, SimFleet, Simulator, TraceRates
from modelfleet.router.config import BackendConfig, ModelEntry, RouterConfig
from modelfleet.router.policy import DemandTracker

OLD = {
    (1, 1.0): (495, 38.98),
    (2, 1.0): (733, 81.48),
    (3, 1.0): (510, 37.18),
    (1, 0.5): (219, 70.74),
    (2, 0.5): (296, 40.81),
    (3, 0.5): (286, 98.04),
    (1, 2.0): (1091, 54.55),
    (2, 2.0): (1262, 1429.3),
    (3, 2.0): (1183, 73.58),
}
HARDWARE = {
    "real": HardwareModel(),
    "instant": HardwareModel(load_gbps=math.inf, load_fixed_s=0.0, mem_bandwidth_gbps=math.inf),
    "instant-decode": HardwareModel(mem_bandwidth_gbps=math.inf),  # loads take their time
    "instant-load": HardwareModel(load_gbps=math.inf, load_fixed_s=0.0),  # decoding does
    "load-x4": HardwareModel(load_gbps=8.0, load_fixed_s=0.375),  # a fast NVMe: 4x faster loads
}


class Switch(DemandTracker):
    """The long-memory rate unless the short window's count departs from it by more than z
    Poisson standard deviations (a change in popularity): then the short one."""

    def __init__(self, short: float, long: float, z: float) -> None:
        super().__init__()
        self.short, self.long, self.z = DemandTracker(short), DemandTracker(long), z

    def record(self, model, now, count=1.0):
        self.short.record(model, now, count)
        self.long.record(model, now, count)

    def rate(self, model, now):
        fast, slow = self.short.rate(model, now), self.long.rate(model, now)
        window = self.short.half_life_s / math.log(2)
        expected, seen = slow * window, fast * window
        return fast if abs(seen - expected) > self.z * math.sqrt(max(expected, 1.0)) else slow

    def rates(self, now):
        return {model: self.rate(model, now) for model in self.long._value}


def pooled_config() -> RouterConfig:
    vram_mb = sum(int(gb * 1024) for _, gb, _ in HOSTS)
    models = [
        ModelEntry(name=n, size_mb=int(g * 1024))
        for n, g in CATALOG_GB
        if g * 1024 <= vram_mb * 0.95
    ]
    backend = BackendConfig(
        name="pool",
        url="http://10.0.0.1:11434",
        host="pool",
        vram_mb=vram_mb,
        slots=sum(s for _, _, s in HOSTS),
        models=models,
    )
    return RouterConfig(backends=[backend], fleet="pooled")


args = sys.argv[1:]
sep = args.index("--") if "--" in args else len(args)
cellspec, kv = args[:sep], args[sep + 1 :]
upd = {}
for a in kv:
    k, v = a.split("=")
    upd[k] = (
        float(v)
        if v.replace(".", "", 1).isdigit()
        else (v == "true" if v in ("true", "false") else v)
    )
config = pooled_config() if os.environ.get("MF_FLEET") == "pooled" else bench_router_config()
config = config.model_copy(update={"policy": config.policy.model_copy(update=upd)})
hardware = HARDWARE[os.environ.get("MF_HW", "real")]
for c in cellspec:
    s, r = c.split(":")
    s, r = int(s), float(r)
    t0 = time.time()
    trace = synthetic_trace(s, r, 3600.0)
    demand_spec = os.environ.get("MF_DEMAND", "")
    demand = None
    if demand_spec == "rates":
        demand = TraceRates(synthetic_spec(s, r, 3600.0))
    elif demand_spec.startswith("switch:"):
        short, long, z = (float(x) for x in demand_spec.split(":")[1:])
        demand = Switch(short, long, z)
    sim = Simulator(
        SimFleet.from_router_config(config, hardware),
        RouterPolicy(config, demand),
        trace,
        keep_alive_s=None,
    )
    out = sim.run().summary()
    o = OLD.get((s, r))
    change = f"({(out['cold_loads'] / o[0] - 1) * 100:+.0f}%)" if o else "(-)"
    print(
        f"{c} {upd} loads {out['cold_loads']} {change} p99 {out['ttft_p99_s']:.1f} (old {o[1] if o else '-'}) p50 {out['ttft_p50_s']:.2f} mean {out['ttft_mean_s']:.2f} thr {out['throughput_rps']:.3f} [{time.time() - t0:.1f}s]",
        flush=True,
    )
