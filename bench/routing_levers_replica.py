"""EXPERIMENT 9 (reverted in the next commit): what evicting one copy of a replicated model
costs. The router alone on synthetic cells given as SEED:RATE; the switch read by
router/policy.py in this commit: MF_REP, the factor on a victim's demand when another loaded
copy of its model stays on the fleet (1: the policy as committed, the full demand). Example:

    MF_REP=0 PYTHONPATH=. .venv/bin/python bench/routing_levers_replica.py 1:1 2:1
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
    )
    out = sim.run().summary()
    old = OLD.get((seed, rate))
    change = f" ({(out['cold_loads'] / old - 1) * 100:+.0f}% vs before v2)" if old else ""
    print(
        f"{cell} loads {out['cold_loads']}{change} p99 {out['ttft_p99_s']:.1f}"
        f" mean {out['ttft_mean_s']:.2f} [{time.time() - started:.0f}s]",
        flush=True,
    )
