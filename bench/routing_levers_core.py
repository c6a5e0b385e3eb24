"""EXPERIMENT 6 (reverted in the next commit): the protected-core lever, see routing_levers_core.sh. Cells as args; env MF_CORE_P, MF_CORE_EPS, MF_CORE_R (GB
reserve), MF_CORE_HL (long half-life s), MF_CORE_SRC (long|rates|short), MF_HW."""
import math, os, sys, time
from bench.routing_quality import CATALOG_GB, HOSTS, bench_router_config, synthetic_spec, synthetic_trace
from modelfleet.deploy.simulate import HardwareModel, RouterPolicy, SimFleet, Simulator, TraceRates
from modelfleet.router import policy as pol
from modelfleet.router.policy import DemandTracker

OLD = {(1, 1.0): (495, 38.98), (2, 1.0): (733, 81.48), (3, 1.0): (510, 37.18),
       (1, 0.5): (219, 70.74), (2, 0.5): (296, 40.81), (3, 0.5): (286, 98.04)}
NOW = {(1, 1.0): (393, 46.8), (2, 1.0): (627, 72.0), (3, 1.0): (455, 45.6),
       (1, 0.5): (221, 57.2), (2, 0.5): (271, 44.4), (3, 0.5): (239, 76.7)}
HW = {"real": HardwareModel(),
      "instant": HardwareModel(load_gbps=math.inf, load_fixed_s=0.0, mem_bandwidth_gbps=math.inf)}
SIZE = dict(CATALOG_GB)
CAP = sum(gb for _, gb, _ in HOSTS) - float(os.environ.get("MF_CORE_R", "66"))
HL = float(os.environ.get("MF_CORE_HL", "1200"))
SRC = os.environ.get("MF_CORE_SRC", "long")


class Dual(DemandTracker):
    def __init__(self):
        super().__init__(300.0)
        self.long = DemandTracker(HL)

    def record(self, model, now, count=1.0):
        super().record(model, now, count)
        self.long.record(model, now, count)


def core_of(rates):
    chosen, used = set(), 0.0
    for m in sorted(rates, key=lambda m: -rates[m] / SIZE[m]):
        if rates[m] > 0 and used + SIZE[m] <= CAP:
            chosen.add(m); used += SIZE[m]
    return chosen


for c in sys.argv[1:]:
    s, r = c.split(":"); s, r = int(s), float(r)
    t0 = time.time()
    trace = synthetic_trace(s, r, 3600.0)
    dual = Dual()
    truth = TraceRates(synthetic_spec(s, r, 3600.0))
    cache = {}
    def source(now, dual=dual, truth=truth, cache=cache):
        key = int(now // 5)
        if key not in cache:
            cache.clear()
            rates = {"long": dual.long, "short": dual, "rates": truth}[SRC].rates(now)
            cache[key] = core_of(rates)
        return cache[key]
    pol.CORE_SOURCE = source
    config = bench_router_config()
    demand = truth if os.environ.get("MF_DEMAND") == "rates" else dual
    sim = Simulator(SimFleet.from_router_config(config, HW[os.environ.get("MF_HW", "real")]),
                    RouterPolicy(config, demand), trace, keep_alive_s=None)
    out = sim.run().summary()
    o, n = OLD.get((s, r)), NOW.get((s, r))
    ch = f"({(out['cold_loads'] / o[0] - 1) * 100:+.0f}% vs v1, {(out['cold_loads'] / n[0] - 1) * 100:+.0f}% vs now)" if o else ""
    print(f"{c} loads {out['cold_loads']} {ch} p99 {out['ttft_p99_s']:.1f} (v1 {o[1] if o else '-'}, now {n[1] if n else '-'}) mean {out['ttft_mean_s']:.2f} [{time.time()-t0:.0f}s]", flush=True)
