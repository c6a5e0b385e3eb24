"""Added latency of Redis shared state (router replicas), side by side with a lone router.

One run, on loopback: the fast stand-in backend (bench/fast_backend.py), a router without
``shared_state`` and a router with it, pointed at a real redis-server (password, no
persistence). The phases of bench/proxy_overhead.py run round by round over direct, the
lone routers and the replica, the order rotating each round:

* resident requests (the steady state): latency at concurrency 1, req/s at 32, streaming;
  a second lone router runs alongside as an A/A control (two identical routers differ by
  this much on the machine of the run);
* a cold load's Redis round trips, which are all a request ever waits on Redis for: the
  pre-check (GET of the model's load lease) and the claim (SET NX PX GET), timed in-process
  with the router's own ``SharedState``; the release and the events go in the background.

    .venv/bin/python -m bench.shared_state_overhead --out bench/results/shared_state_overhead.json

Needs ``redis-server`` (Debian's package; ``deploy/setup.sh --all`` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.proxy_overhead import (
    free_port,
    machine,
    measure,
    pct,
    print_table,
    process,
    start_backend,
    start_router,
    summarize,
)
from modelfleet.router.config import RouterConfig
from modelfleet.router.core import Router

PASSWORD = "bench-only-redis-password"


def start_redis(stack: ExitStack, work: Path) -> tuple[str, Path]:
    """redis-server on 127.0.0.1:<free port>; returns its URL and a 0600 password file."""
    port = free_port()
    conf, secret = work / "redis.conf", work / "redis.secret"
    for path, text in (
        (conf, f"bind 127.0.0.1\nport {port}\nsave ''\nappendonly no\nrequirepass {PASSWORD}\n"),
        (secret, PASSWORD + "\n"),
    ):
        path.touch(mode=0o600)
        path.write_text(text)
    proc = stack.enter_context(process(["redis-server", str(conf)], work / "redis.log"))
    deadline = time.monotonic() + 10
    while "Ready to accept connections" not in (work / "redis.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start; see {work / 'redis.log'}")
        time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", secret


async def cold_load_round_trips(shared: dict[str, Any], n: int) -> dict[str, Any]:
    """What a cold load waits on Redis for: the pre-check and the claim (then released)."""
    router = Router(RouterConfig.model_validate({"shared_state": shared}))
    state = router.shared
    assert state is not None
    await state._join()  # connect as the app's cleanup_ctx would
    samples: list[float] = []
    try:
        for i in range(n):
            model = f"bench-cold-{i % 8}"
            start = time.perf_counter()
            await state.lease_holder(model)
            claim = await state.claim_load(model, "bench")
            samples.append(time.perf_counter() - start)
            assert claim.outcome == "won", claim
            state.release_load(model, "bench", claim.token, ok=True)
            await asyncio.gather(*router.background)  # the release runs in the background
    finally:
        await state.close()
    return {
        "samples": len(samples),
        "p50_ms": round(pct(samples, 50) * 1000, 3),
        "p99_ms": round(pct(samples, 99) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-n", type=int, default=200, help="requests per latency block")
    parser.add_argument("--throughput-n", type=int, default=1000, help="requests per c=32 block")
    parser.add_argument("--streams-n", type=int, default=48, help="streams per c=16 block")
    parser.add_argument("--chunks", type=int, default=32, help="SSE chunks per stream")
    parser.add_argument(
        "--chunk-interval-ms",
        type=float,
        default=0.0,
        help="0: the backend answers at once, so a request's latency is the router's own",
    )
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--cold-n", type=int, default=500, help="cold-load claims timed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")

    report: dict[str, Any] = {
        "benchmark": "shared_state_overhead",
        "command": "python -m bench.shared_state_overhead " + " ".join(sys.argv[1:]),
        "machine_before": machine(),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="mf-shared-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        url, secret = start_redis(stack, work)
        shared = {"url": url, "password_file": str(secret), "timeout_ms": 50, "replica": "bench"}
        backend = start_backend(stack, work, args.chunks, args.chunk_interval_ms)
        targets = [
            backend,
            start_router(stack, work, backend.base_url, name="router alone"),
            # the same lone router twice: how far two identical routers differ on this
            # machine, the noise any difference with Redis must stand out of
            start_router(stack, work, backend.base_url, name="router alone (A/A control)"),
            start_router(
                stack,
                work,
                backend.base_url,
                name="router + redis",
                settings={"shared_state": shared},
            ),
        ]
        samples = asyncio.run(measure(targets, args))
        results = summarize(samples)
        alone, replica = results["router alone"], results["router + redis"]
        control = results["router alone (A/A control)"]
        report["results"] = results
        report["a_a_control"] = {
            "p50_ms": round(control["latency_p50_ms"] - alone["latency_p50_ms"], 3),
            "rps_c32_ratio": round(control["rps_c32_mean"] / alone["rps_c32_mean"], 3),
        }
        report["added_by_redis"] = {
            "resident_p50_ms": round(replica["latency_p50_ms"] - alone["latency_p50_ms"], 3),
            "resident_p50_ms_by_round": [
                round(r - a, 3)
                for r, a in zip(
                    replica["overhead_p50_ms_by_round"],
                    alone["overhead_p50_ms_by_round"],
                    strict=True,
                )
            ],
            "rps_c32_ratio": round(replica["rps_c32_mean"] / alone["rps_c32_mean"], 3),
            "cold_load_wait": asyncio.run(cold_load_round_trips(shared, args.cold_n)),
        }
        report["machine_after"] = machine()
    print_table(report["results"])
    print("\nadded by Redis:", json.dumps(report["added_by_redis"]))
    print("A/A control (lone router vs lone router):", json.dumps(report["a_a_control"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
