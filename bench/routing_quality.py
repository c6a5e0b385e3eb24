"""Routing quality: the router's policy against the usual alternatives, in the simulator.

Replays deterministic synthetic traces (Zipf popularity over 32 models, bursts, a shift of
the popular set half-way) on a modeled six-host fleet and compares cold loads, evictions,
time to first token and throughput with round-robin, least-connections, PolyLlama's
least-models-per-instance and the offline Belady bound.

    .venv/bin/python -m bench.routing_quality --seeds 1 2 3 --out bench/results/routing_quality.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from deploy.simulate import (
    POLICIES,
    HardwareModel,
    SimFleet,
    TraceSpec,
    compare,
    generate_trace,
    iter_table,
)
from router.config import BackendConfig, ModelEntry, RouterConfig

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


def run(seeds: list[int], rate: float, duration: float, keep_alive: float | None) -> dict:
    config = bench_router_config()
    hardware = HardwareModel()
    runs = []
    for seed in seeds:
        spec = TraceSpec(
            models=[name for name, _ in CATALOG_GB],
            seed=seed,
            duration_s=duration,
            rate_rps=rate,
        )
        trace = generate_trace(spec)
        result = compare(
            lambda: SimFleet.from_router_config(config, hardware),
            trace,
            policies(),
            keep_alive_s=keep_alive,
        )
        result["seed"] = seed
        runs.append(result)
        print(f"\nseed {seed}: {result['requests']} requests, rate {rate}/s, {duration:.0f} s")
        for line in iter_table(result):
            print(line)
    return {
        "benchmark": "routing_quality",
        "command": "python -m bench.routing_quality " + " ".join(sys.argv[1:]),
        "fleet": SimFleet.from_router_config(config, hardware).describe(),
        "trace": {"rate_rps": rate, "duration_s": duration, "models": len(CATALOG_GB)},
        "keep_alive_s": keep_alive,
        "python": platform.python_version(),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rate", type=float, default=1.0, help="mean requests/s outside bursts")
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--keep-alive", type=float, default=None, help="seconds; default never")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.seeds, args.rate, args.duration, args.keep_alive)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
