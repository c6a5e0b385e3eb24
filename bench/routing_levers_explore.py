"""EXPERIMENT (reverted in the next commit): the router alone on synthetic cells, with PolicyConfig
overrides after --; lever switches are the MF_* environment variables read by router/policy.py
and router/bookkeeping.py in this commit. Example:

    MF_X=long PYTHONPATH=. .venv/bin/python bench/routing_levers_explore.py 1:1 2:1 3:1 1:0.5 2:0.5 3:0.5
"""
import sys, time, json
from modelfleet.deploy.simulate import RouterPolicy, SimFleet, Simulator
from bench.routing_quality import bench_router_config, synthetic_trace
OLD = {(1,1.0):(495,38.98),(2,1.0):(733,81.48),(3,1.0):(510,37.18),(1,0.5):(219,70.74),(2,0.5):(296,40.81),(3,0.5):(286,98.04),
       (1,2.0):(1091,54.55),(2,2.0):(1262,1429.3),(3,2.0):(1183,73.58)}
args = sys.argv[1:]
sep = args.index("--") if "--" in args else len(args)
cellspec, kv = args[:sep], args[sep+1:]
upd = {}
for a in kv:
    k, v = a.split("=")
    upd[k] = float(v) if v.replace('.','',1).isdigit() else (v == "true" if v in ("true","false") else v)
config = bench_router_config()
config = config.model_copy(update={"policy": config.policy.model_copy(update=upd)})
for c in cellspec:
    s, r = c.split(":"); s, r = int(s), float(r)
    t0 = time.time()
    trace = synthetic_trace(s, r, 3600.0)
    sim = Simulator(SimFleet.from_router_config(config), RouterPolicy(config), trace, keep_alive_s=None)
    out = sim.run().summary()
    o = OLD[(s, r)]
    print(f"{c} {upd} loads {out['cold_loads']} ({(out['cold_loads']/o[0]-1)*100:+.0f}%) p99 {out['ttft_p99_s']:.1f} (old {o[1]}) p50 {out['ttft_p50_s']:.2f} thr {out['throughput_rps']:.3f} [{time.time()-t0:.1f}s]", flush=True)
