"""Routing quality: the router's policy against the usual alternatives, in the simulator.

Replays workloads on a modeled six-host fleet and compares cold loads, evictions, time to
first token and throughput of the router's policy with round-robin, least-connections and
PolyLlama's least-models-per-instance. Each run comes with a lower bound that holds for it:
the LP relaxation of the pooled problem in which no request gets its first token later than
in that run (``summary_with_bound``, ``deploy/bounds.py``). Each cell also
has the bounds for runs in which no request waits (the pooled LP and integer program), the
first-touch bound, and reference points that are not bounds: the Belady replay (pooled,
clairvoyant); the router's own rules fed perfect knowledge instead of its decayed request
counts: the workload's true rates (``TraceRates``, synthetic cells) and each model's next
request (``NextUseDemand``); and the router's own rules on hardware where loads and
decoding take no time (``INSTANT``).

    .venv/bin/python -m bench.routing_quality --jobs 2 --out bench/results/routing_quality.json

Workloads (cells): deterministic synthetic traces, seeds 1-3 at 0.5 / 1 / 2 req/s (Zipf
popularity over 32 models, bursts, a shift of the popular set half-way), and the public
Azure LLM inference trace 2023 mapped onto the catalog (``AZURE_FAMILIES`` below,
``deploy/azure_trace.py``). Cells run in ``--jobs`` worker processes (bounded; 1 = serial).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from modelfleet.deploy.azure_trace import azure_trace
from modelfleet.deploy.simulate import (
    POLICIES,
    HardwareModel,
    NextUseDemand,
    Request,
    RouterPolicy,
    SimFleet,
    Simulator,
    TraceRates,
    TraceSpec,
    compare,
    generate_trace,
    iter_table,
    summary_with_bound,
)
from modelfleet.router.config import BackendConfig, ModelEntry, PolicyConfig, RouterConfig

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


# --------------------------------------------------------------------------- workloads

AZURE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "azure-llm-2023"

# The Azure trace has no model names; this mapping is part of every result measured on it.
# Each service asks for its own family, most popular first (Zipf s = 1.1 inside a family).
AZURE_FAMILIES = {
    "AzureLLMInferenceTrace_code.csv": [
        "qwen2.5-coder-32b",
        "devstral-24b",
        "qwen3-30b-a3b",
        "gpt-oss-20b",
        "qwen3-14b",
        "deepseek-r1-14b",
        "qwen3-8b",
        "qwen2.5-72b",
        "gpt-oss-120b",
        "qwen3-4b",
    ],
    "AzureLLMInferenceTrace_conv.csv": [
        "llama3.1-8b",
        "gemma3-27b",
        "mistral-small-24b",
        "llama3.3-70b",
        "qwen3-32b",
        "gemma3-12b",
        "mistral-7b",
        "phi4-14b",
        "aya-expanse-32b",
        "deepseek-r1-70b",
        "command-r-35b",
        "llama3.2-3b",
        "qwen2.5-7b",
        "deepseek-r1-32b",
        "mistral-nemo-12b",
        "gemma3-4b",
        "granite3.3-8b",
        "deepseek-r1-8b",
        "phi4-mini",
        "llama3.2-1b",
        "gemma3-1b",
        "qwen3-1.7b",
    ],
}
AZURE_KEEP_EVERY = 8  # 7.8 req/s in full; every 8th request of each service: ~1 req/s


def synthetic_spec(seed: int, rate: float, duration: float) -> TraceSpec:
    models = [name for name, _ in CATALOG_GB]
    return TraceSpec(models=models, seed=seed, duration_s=duration, rate_rps=rate)


def synthetic_trace(seed: int, rate: float, duration: float) -> list[Request]:
    return generate_trace(synthetic_spec(seed, rate, duration))


def azure_workload(data_dir: Path = AZURE_DIR, keep_every: int = AZURE_KEEP_EVERY) -> list[Request]:
    return azure_trace(
        {data_dir / name: family for name, family in AZURE_FAMILIES.items()},
        keep_every=keep_every,
    )


def cell_trace(cell: dict[str, Any]) -> list[Request]:
    if cell["workload"] == "azure":
        return azure_workload(Path(cell["data_dir"]), cell["keep_every"])
    return synthetic_trace(cell["seed"], cell["rate_rps"], cell["duration_s"])


def cell_label(cell: dict[str, Any]) -> str:
    if cell["workload"] == "azure":
        return f"azure 2023 code+conv, every {cell['keep_every']}th"
    return f"synthetic seed {cell['seed']}, {cell['rate_rps']:g} req/s"


# --------------------------------------------------------------------------- running cells


# Loads and decoding that take no time: the router's rules with nothing ever busy or loading.
INSTANT = HardwareModel(load_gbps=math.inf, load_fixed_s=0.0, mem_bandwidth_gbps=math.inf)


def fleet_factory(
    policy_config: PolicyConfig | None = None, hardware: HardwareModel | None = None
) -> Any:
    config = bench_router_config()
    if policy_config is not None:
        config = config.model_copy(update={"policy": policy_config})
    return lambda: SimFleet.from_router_config(config, hardware or HardwareModel())


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """One workload, every policy, the bounds and the reference runs. Pure and deterministic."""
    trace = cell_trace(cell)
    result = compare(
        fleet_factory(), trace, policies(), keep_alive_s=cell["keep_alive_s"], integer_bound=True
    )

    def reference(policy: RouterPolicy, hardware: HardwareModel | None = None) -> dict[str, Any]:
        """The modelfleet row's rules with one thing changed: demand or hardware."""
        fleet = fleet_factory(hardware=hardware)()
        sim = Simulator(fleet, policy, trace, keep_alive_s=cell["keep_alive_s"])
        return summary_with_bound(sim.run(), fleet)

    result["next_use_oracle"] = reference(RouterPolicy(demand=NextUseDemand(trace)))
    if cell["workload"] == "synthetic":  # the rates a synthetic trace was drawn from
        spec = synthetic_spec(cell["seed"], cell["rate_rps"], cell["duration_s"])
        result["trace_rates"] = reference(RouterPolicy(demand=TraceRates(spec)))
    result["instant_hardware"] = reference(RouterPolicy(), INSTANT)
    return cell | {"label": cell_label(cell)} | result


def run_hold_point(args: tuple[dict[str, Any], float]) -> dict[str, Any]:
    """The router's policy alone on one workload with one ``max_hold_s``."""
    cell, hold = args
    config = bench_router_config()
    config = config.model_copy(
        update={"policy": config.policy.model_copy(update={"max_hold_s": hold})}
    )
    trace = cell_trace(cell)
    sim = Simulator(
        SimFleet.from_router_config(config),
        RouterPolicy(config),
        trace,
        keep_alive_s=cell["keep_alive_s"],
    )
    summary = sim.run().summary()
    keep = ("cold_loads", "ttft_p50_s", "ttft_p99_s", "throughput_rps")
    return {"cell": cell_label(cell), "max_hold_s": hold} | {k: summary[k] for k in keep}


def load_timeline(seed: int, rate: float, duration: float) -> dict[str, list[float]]:
    """Times of every load, per policy, for the cumulative-loads plot."""
    trace = synthetic_trace(seed, rate, duration)
    timeline = {}
    for label, make in policies().items():
        sim = Simulator(fleet_factory()(), make(), trace, record_events=True)
        events = sim.run().events
        timeline[label] = [round(t, 1) for t, what, _ in events if what == "load"]
    return timeline


def fingerprint_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Every policy's full event log on one workload, hashed: a refactor that must not change
    behaviour leaves these equal."""
    trace = cell_trace(cell)
    hashes = {}
    for label, make in policies().items():
        sim = Simulator(fleet_factory()(), make(), trace, keep_alive_s=cell["keep_alive_s"],
                        record_events=True)  # fmt: skip
        events = json.dumps(sim.run().events).encode()
        hashes[label] = hashlib.sha256(events).hexdigest()[:16]
    return {"cell": cell_label(cell), "keep_alive_s": cell["keep_alive_s"]} | hashes


def cells(
    seeds: list[int],
    rates: list[float],
    duration: float,
    azure: Path | None,
    keep_alive: float | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "workload": "synthetic",
            "seed": seed,
            "rate_rps": rate,
            "duration_s": duration,
            "keep_alive_s": keep_alive,
        }
        for rate in rates
        for seed in seeds
    ]
    if azure is not None:
        out.append(
            {
                "workload": "azure",
                "data_dir": str(azure),
                "keep_every": AZURE_KEEP_EVERY,
                "keep_alive_s": keep_alive,
            }
        )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    todo = cells(args.seeds, args.rates, args.duration, args.azure, args.keep_alive)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        scenarios = list(pool.map(run_cell, todo))
        for result in scenarios:
            print(f"\n{result['label']}: {result['requests']} requests")
            for line in iter_table(result):
                print(line)
        hold_curve = []
        if args.hold_sweep:
            points = [(cell, hold) for cell in todo for hold in args.hold_sweep]
            hold_curve = list(pool.map(run_hold_point, points))
            for point in hold_curve:
                print(json.dumps(point))
    main = todo[0]
    report: dict[str, Any] = {
        "benchmark": "routing_quality",
        "command": "python -m bench.routing_quality " + " ".join(sys.argv[1:]),
        "fleet": fleet_factory()().describe(),
        "catalog_gb": dict(CATALOG_GB),
        "policy_config": bench_router_config().policy.model_dump(),
        "azure_mapping": {
            "families": AZURE_FAMILIES,
            "keep_every": AZURE_KEEP_EVERY,
            "zipf_s": 1.1,
        },
        "python": platform.python_version(),
        "scenarios": scenarios,
        "hold_curve": hold_curve,
    }
    if main["workload"] == "synthetic":
        report["timeline"] = {
            "seed": main["seed"],
            "rate_rps": main["rate_rps"],
            **load_timeline(main["seed"], main["rate_rps"], main["duration_s"]),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[1.0, 0.5, 2.0],
        help="mean requests/s outside bursts; the first is the main case",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument(
        "--azure", type=Path, default=AZURE_DIR,
        help="folder with the Azure 2023 CSVs (give 'none' to skip that workload)",
    )  # fmt: skip
    parser.add_argument("--keep-alive", type=float, default=None, help="idle unload, seconds")
    parser.add_argument(
        "--hold-sweep", type=float, nargs="*", default=[],
        help="also run the router's policy alone with each of these max_hold_s values",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (bounded)")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--fingerprint", action="store_true",
        help="only print a hash of each policy's event log per cell (behaviour-change check)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.azure is not None and str(args.azure) == "none":
        args.azure = None
    if args.fingerprint:
        todo = cells(args.seeds, args.rates, args.duration, args.azure, args.keep_alive)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(fingerprint_cell, todo):
                print(json.dumps(line))
        return
    report = run(args)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
