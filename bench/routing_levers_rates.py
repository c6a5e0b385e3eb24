"""EXPERIMENT 10 (reverted in the next commit): where knowing the true rates helps. The router
alone on synthetic cells given as SEED:RATE, with a demand tracker chosen by MF_RATES in place
of the router's decayed request counts (references, not policies: each knows something of
how the trace was drawn):

- ``counts``: the router's own tracker (the policy as committed);
- ``true``: :class:`TraceRates`, the rates the trace was drawn from, bursts included;
- ``steady``: the Zipf rates only, at the ranks of the moment (no burst term);
- ``steady+counts``: the larger of the Zipf rate and the router's own count, per model;
- ``late:D``: the true rates, but the popularity shift is learned D s after it happens;
- ``never``: the true rates, but the shift is never learned (the first ranks throughout);
- ``ranked:H``: no knowledge: counts with an H s half-life rank the models, and each gets
  the rate a Zipf curve fitted to those counts gives its rank (noise pooled across models).

    MF_RATES=steady PYTHONPATH=. .venv/bin/python bench/routing_levers_rates.py 1:1 2:1
"""

import math
import os
import sys
import time

from bench.routing_quality import bench_router_config, synthetic_spec, synthetic_trace
from modelfleet.deploy.simulate import (
    HardwareModel,
    RouterPolicy,
    SimFleet,
    Simulator,
    TraceRates,
    TraceSpec,
)
from modelfleet.router.policy import DemandTracker

OLD = {(1, 1.0): 495, (2, 1.0): 733, (3, 1.0): 510, (1, 0.5): 219, (2, 0.5): 296, (3, 0.5): 286}


class KnownRates(TraceRates):
    """The trace's rates with some of their knowledge taken away (see the module docstring)."""

    def __init__(self, spec: TraceSpec, mode: str) -> None:
        super().__init__(spec)
        self.mode = mode
        self.counts = DemandTracker()
        self.lag = float(mode.split(":")[1]) if mode.startswith("late:") else 0.0

    def record(self, model: str, now: float, count: float = 1.0) -> None:
        self.counts.record(model, now, count)

    def rate(self, model: str, now: float) -> float:
        spec, popularity = self.spec, self.popularity
        if self.mode == "never":
            order = popularity.ranking
        else:
            order = (
                popularity.ranking if now < popularity.shift_t + self.lag else popularity.shifted
            )
        rate = spec.rate_rps * self.weights[order.index(model)]
        if self.mode == "steady+counts":
            return max(rate, self.counts.rate(model, now))
        if self.mode != "steady":
            for start, burst_model in popularity.bursts:
                if burst_model == model and start <= now <= start + spec.burst_span_s:
                    rate += spec.burst_requests / spec.burst_span_s
        return rate


class RankedCounts(DemandTracker):
    """Decayed counts, smoothed across models: a Zipf curve fitted (least squares in log-log)
    to the counts by rank; each model seen gets its rank's fitted rate."""

    def rates(self, now: float) -> dict[str, float]:
        raw = {m: super(RankedCounts, self).rate(m, now) for m in self._value}
        seen = sorted((r, m) for m, r in raw.items() if r > 0)[::-1]
        if len(seen) < 3:
            return raw
        xs = [math.log(rank) for rank in range(1, len(seen) + 1)]
        ys = [math.log(r) for r, _ in seen]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        fitted = [math.exp(my + slope * (x - mx)) for x in xs]
        scale = sum(r for r, _ in seen) / sum(fitted)  # keep the total rate
        return {m: f * scale for (_, m), f in zip(seen, fitted, strict=True)}

    def rate(self, model: str, now: float) -> float:
        return self.rates(now).get(model, 0.0)


mode = os.environ.get("MF_RATES", "counts")
for cell in sys.argv[1:]:
    seed, rate = int(cell.split(":")[0]), float(cell.split(":")[1])
    started = time.time()
    config = bench_router_config()
    spec = synthetic_spec(seed, rate, 3600.0)
    demand: DemandTracker | None = None
    if mode == "true":
        demand = TraceRates(spec)
    elif mode.startswith("ranked:"):
        demand = RankedCounts(half_life_s=float(mode.split(":")[1]))
    elif mode != "counts":
        demand = KnownRates(spec, mode)
    sim = Simulator(
        SimFleet.from_router_config(config, HardwareModel()),
        RouterPolicy(config, demand=demand),
        synthetic_trace(seed, rate, 3600.0),
        keep_alive_s=None,
    )
    out = sim.run().summary()
    old = OLD.get((seed, rate))
    change = f" ({(out['cold_loads'] / old - 1) * 100:+.0f}% vs before v2)" if old else ""
    print(
        f"{cell} loads {out['cold_loads']}{change} p99 {out['ttft_p99_s']:.1f}"
        f" mean {out['ttft_mean_s']:.2f} [{time.time() - started:.0f}s]",
        flush=True,
    )
