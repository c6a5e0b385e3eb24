#!/usr/bin/env python3
"""Router overhead over a direct connection: p50 non-streaming latency at concurrency 1.

Starts, all on 127.0.0.1:
  * a fast OpenAI-shaped stand-in backend (a separate aiohttp process answering a fixed
    ``/v1/chat/completions`` reply at once, no generation),
  * the real router process (``python -m modelfleet.router --config <tmp>/router.yaml``) before it,
then sends the same request sequentially over one keep-alive connection each, alternating
blocks of requests between "direct" and "through the router" so that drift in machine
load hits both alike. Prints latency percentiles and the p50 difference.

    .venv/bin/python bench/router_overhead.py --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BODY = json.dumps(
    {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
).encode()
REPLY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fast",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


def serve_backend(port: int) -> None:
    """The fast stand-in backend (runs in its own process)."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=REPLY, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fast", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not become ready")


def timed_block(conn: http.client.HTTPConnection, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", BODY, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        samples.append(time.perf_counter() - start)
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per path")
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        serve_backend(args.serve_backend)
        return

    backend_port, router_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="router-overhead-") as tmp:
        config = Path(tmp) / "router.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{router_port}\n"
            "backends:\n"
            f"  - {{name: fast, url: 'http://127.0.0.1:{backend_port}', kind: openai, slots: 64}}\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        try:
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--serve-backend", str(backend_port)], env=env
                )
            )
            wait_ready(backend_port, "/v1/models")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "modelfleet.router",
                        "--config",
                        str(config),
                        "--log-level",
                        "warning",
                    ],
                    env=env,
                )
            )
            wait_ready(router_port, "/readyz")
            direct = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=10)
            routed = http.client.HTTPConnection("127.0.0.1", router_port, timeout=10)
            timed_block(direct, 200)  # warm-up: connections, caches, the router's first routes
            timed_block(routed, 200)
            samples: dict[str, list[float]] = {"direct": [], "router": []}
            for _ in range(max(1, args.requests // args.block)):
                samples["direct"] += timed_block(direct, args.block)
                samples["router"] += timed_block(routed, args.block)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(timeout=10)

    print(f"requests per path: {len(samples['direct'])}, concurrency 1, non-streaming, keep-alive")
    print(f"{'path':8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in samples.items():
        print(
            f"{name:8} {pct(values, 0.5):8.3f} {pct(values, 0.9):8.3f} {pct(values, 0.99):8.3f}"
            f" {statistics.mean(values) * 1000:8.3f}"
        )
    overhead = pct(samples["router"], 0.5) - pct(samples["direct"], 0.5)
    print(f"router overhead at p50: {overhead:.3f} ms")


if __name__ == "__main__":
    main()
