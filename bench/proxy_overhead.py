"""Proxy overhead: direct vs the modelfleet router vs nginx vs the LiteLLM proxy, one run.

Every target fronts the same fast stand-in backend (bench/fast_backend.py) on loopback.
The phases run round by round, and within a round every target in turn (the order rotates
each round), so background load on the machine hits all targets alike:

* latency: non-streaming chat completions one at a time (concurrency 1), p50/p99;
* throughput: non-streaming at concurrency 32, requests/s;
* streaming: SSE chat completions at concurrency 16, time to first token and chunks/s.

Every request loop is bounded (a fixed request count per block). Failed requests are
counted and reported, never dropped silently. With ``--pin`` (the default on a machine with
two or more CPUs) every proxy runs on CPU 0 and the backend and this client on CPU 1, so a
proxy's own cost is not mixed with the load generator's; the CPU time each target's
processes use during the concurrency-32 blocks, divided by the requests answered, is its CPU
per request. ``--baseline-tree DIR`` adds a second router started from another source tree
(say ``git archive <rev>`` unpacked), so before and after come from the same run.
``--profile`` then attaches py-spy to the router during an extra throughput block and reports
where its time goes.

    .venv/bin/python -m bench.proxy_overhead --rounds 5 --out bench/results/proxy_overhead.json

nginx: Debian's nginx-light (``apt-get install nginx-light``). LiteLLM: ``litellm[proxy]`` in
its own venv, default ``~/.cache/modelfleet/litellm-venv`` (``deploy/setup.sh --bench``).
A target whose program is missing is skipped and reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from modelfleet.deploy.simulate import percentile

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CACHE = Path(os.environ.get("MODELFLEET_CACHE", Path.home() / ".cache" / "modelfleet"))
LITELLM_VENV = CACHE / "litellm-venv"
MODEL = "bench-model"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
STREAM_BODY = {**BODY, "stream": True}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{url}: process exited {proc.returncode}; {log}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}: not ready after {timeout_s:.0f} s; see {log}")


@contextmanager
def process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[Any]:
    """Start ``cmd`` in its own process group; stop it (SIGTERM, then SIGKILL) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass
class Target:
    name: str
    base_url: str  # ends before /v1
    pid: int | None = None  # leads its own process group (``process``)
    version: str = ""


PROXY_CPU, LOAD_CPU = "0", "1"  # --pin: proxies on one CPU, backend and client on the other


def pinned(cmd: list[str], cpu: str | None) -> list[str]:
    """``cmd`` under ``taskset`` (every thread it starts inherits the CPU), or as it is."""
    return ["taskset", "-c", cpu, *cmd] if cpu is not None else cmd


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime stime
            total += int(fields[11]) + int(fields[12])
    return total / tick


def start_backend(
    stack: ExitStack,
    work: Path,
    chunks: int,
    interval_ms: float,
    same_answer: bool = False,
    cpu: str | None = None,
) -> Target:
    port = free_port()
    log = work / "backend.log"
    cmd = [PYTHON, "-m", "bench.fast_backend", "--port", str(port), "--chunks", str(chunks)]
    cmd += ["--chunk-interval-ms", str(interval_ms)] + (["--same-answer"] if same_answer else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = stack.enter_context(process(pinned(cmd, cpu), log, env=env))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health", 30, proc, log)
    return Target("direct", url, proc.pid, "bench/fast_backend.py (aiohttp)")


def start_router(
    stack: ExitStack,
    work: Path,
    backend: str,
    cpu: str | None = None,
    tree: Path = REPO,
    name: str = "modelfleet router",
    settings: dict[str, Any] | None = None,
) -> Target:
    """The router of source tree ``tree`` (this checkout, or a baseline's); ``settings`` are
    extra router.yaml keys."""
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "backends": [
            {
                "name": "bench",
                "url": backend,
                "kind": "openai",
                "slots": 1024,  # the stand-in has no slot limit: let the router not invent one
                "models": [{"name": MODEL}],
            }
        ],
        "queue": {"max_per_model": 4096},
        **(settings or {}),
    }
    path = work / f"router-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = work / f"router-{port}.log"
    cmd = [PYTHON, "-m", "modelfleet.router", "--config", str(path), "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # run from the tree: `python -m` puts the working directory first on sys.path
    proc = stack.enter_context(process(pinned(cmd, cpu), log, env=env, cwd=tree))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/readyz", 30, proc, log)
    version = "router/ (this checkout)" if tree == REPO else f"router/ of {tree}"
    return Target(name, url, proc.pid, version)


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    upstream backend {{
        server {backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 900s;
        }}
    }}
}}
"""


def start_floor(stack: ExitStack, work: Path, backend: str, cpu: str | None = None) -> Target:
    """bench/floor_proxy.py: a bare aiohttp pass-through, the floor for any aiohttp proxy."""
    port = free_port()
    log = work / "floor.log"
    cmd = [PYTHON, "-m", "bench.floor_proxy", "--port", str(port), "--backend", backend]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = stack.enter_context(process(pinned(cmd, cpu), log, env=env))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health", 30, proc, log)
    return Target("aiohttp floor (bare pass-through)", url, proc.pid,
                  f"bench/floor_proxy.py, aiohttp {aiohttp.__version__}")  # fmt: skip


def start_nginx(
    stack: ExitStack, work: Path, backend: str, cpu: str | None = None
) -> Target | None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        return None
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(work=work, port=port, backend=backend.removeprefix("http://"))
    )
    log = work / "nginx.log"
    cmd = pinned([nginx, "-p", str(work), "-c", str(conf)], cpu)
    proc = stack.enter_context(process(cmd, log))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health", 30, proc, log)
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    return Target("nginx", url, proc.pid, version)


def start_litellm(
    stack: ExitStack, work: Path, backend: str, venv: Path, cpu: str | None = None
) -> Target | None:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        return None
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": backend + "/v1",
                    "api_key": "stand-in",
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path = work / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from GitHub at start
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        # No client auth on any target (the router and nginx run without keys too).
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    env.pop("PYTHONPATH", None)
    log = work / "litellm.log"
    cmd = [str(exe), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    proc = stack.enter_context(process(pinned(cmd, cpu), log, env=env))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/health/liveliness", 180, proc, log)
    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return Target("LiteLLM proxy", url, proc.pid, f"litellm {version}")


# --------------------------------------------------------------------------- measurement


@dataclass
class Samples:
    latency_s: list[float] = field(default_factory=list)
    latency_block_p50_s: list[float] = field(default_factory=list)  # one per round
    throughput: list[dict[str, float]] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    # the stand-in backend's own CPU per request while this target's c=32 block ran: what
    # the target makes the backend do (the router's default asks it for a stream)
    backend_cpu_us_per_req: list[float] = field(default_factory=list)
    streaming: list[dict[str, float]] = field(default_factory=list)
    cpu_us_per_req: list[float] = field(default_factory=list)  # one per c=32 block
    stream_whole_s: list[float] = field(default_factory=list)  # direct: a whole stream, c=1
    errors: Counter[str] = field(default_factory=Counter)


async def one_request(session: aiohttp.ClientSession, url: str, errors: Counter[str]) -> bool:
    try:
        async with session.post(url, json=BODY) as resp:
            body = await resp.read()
            if resp.status != 200 or b"choices" not in body:
                errors[f"HTTP {resp.status}"] += 1
                return False
            return True
    except (aiohttp.ClientError, TimeoutError) as exc:
        errors[type(exc).__name__] += 1
        return False


async def latency_block(session: aiohttp.ClientSession, url: str, n: int, s: Samples) -> None:
    block = []
    for _ in range(n):
        start = time.perf_counter()
        if await one_request(session, url, s.errors):
            block.append(time.perf_counter() - start)
    s.latency_s += block
    s.latency_block_p50_s.append(pct(block, 50))


async def stream_whole_block(session: aiohttp.ClientSession, url: str, n: int, s: Samples) -> None:
    """A whole streamed answer, one at a time: what the backend itself takes to send the
    stream the router asks it for when a client wants one JSON answer (``stream_upstream``)."""
    for _ in range(n):
        start = time.perf_counter()
        try:
            async with session.post(url, json=STREAM_BODY) as resp:
                await resp.read()
                if resp.status != 200:
                    s.errors[f"HTTP {resp.status}"] += 1
                    continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            s.errors[type(exc).__name__] += 1
            continue
        s.stream_whole_s.append(time.perf_counter() - start)


async def throughput_block(
    session: aiohttp.ClientSession, url: str, concurrency: int, total: int, s: Samples
) -> None:
    remaining = total
    ok = 0

    async def worker() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            success = await one_request(session, url, s.errors)
            ok += success  # not `ok += await ...`: that reads ok before the await

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    s.throughput.append({"ok": ok, "seconds": elapsed, "rps": ok / elapsed})


async def stream_one(
    session: aiohttp.ClientSession, url: str, s: Samples
) -> tuple[float | None, int]:
    start = time.perf_counter()
    first: float | None = None
    chunks = 0
    try:
        async with session.post(url, json=STREAM_BODY) as resp:
            if resp.status != 200:
                s.errors[f"HTTP {resp.status}"] += 1
                await resp.read()
                return None, 0
            async for line in resp.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                if b'"content"' in line:
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - start
    except (aiohttp.ClientError, TimeoutError) as exc:
        s.errors[type(exc).__name__] += 1
        return None, 0
    return first, chunks


async def streaming_block(
    session: aiohttp.ClientSession,
    url: str,
    concurrency: int,
    total: int,
    expected_chunks: int,
    s: Samples,
) -> None:
    remaining = total
    chunks_seen = 0
    streams_ok = 0

    async def worker() -> None:
        nonlocal remaining, chunks_seen, streams_ok
        while remaining > 0:
            remaining -= 1
            ttft, chunks = await stream_one(session, url, s)
            if ttft is not None:
                s.ttft_s.append(ttft)
                chunks_seen += chunks
                streams_ok += 1
                if chunks != expected_chunks:
                    s.errors[f"stream with {chunks}/{expected_chunks} chunks"] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    s.streaming.append(
        {
            "streams": streams_ok,
            "chunks": chunks_seen,
            "seconds": elapsed,
            "cps": chunks_seen / elapsed,
        }
    )


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (NaN when there are no values)."""
    return percentile(sorted(values), p) if values else float("nan")


async def measure(targets: list[Target], args: argparse.Namespace) -> dict[str, Samples]:
    samples = {t.name: Samples() for t in targets}
    timeout = aiohttp.ClientTimeout(total=120)
    sessions = {
        t.name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), timeout=timeout)
        for t in targets
    }
    try:
        urls = {t.name: t.base_url + "/v1/chat/completions" for t in targets}
        for t in targets:  # warm up connections, JIT-free caches, LiteLLM's lazy imports
            warm = Samples()
            await throughput_block(sessions[t.name], urls[t.name], 8, args.warmup, warm)
            await streaming_block(sessions[t.name], urls[t.name], 4, 8, args.chunks, warm)
        for round_no in range(args.rounds):
            order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
            print(f"round {round_no + 1}/{args.rounds}: {' -> '.join(t.name for t in order)}")
            for t in order:
                await latency_block(sessions[t.name], urls[t.name], args.latency_n, samples[t.name])
                if t.name == "direct":
                    direct = samples["direct"]
                    await stream_whole_block(sessions[t.name], urls[t.name], args.latency_n, direct)
            backend_pid = targets[0].pid  # "direct": the stand-in every target fronts
            for t in order:
                s = samples[t.name]
                cpu_before = group_cpu_s(t.pid) if t.pid else 0.0
                backend_before = group_cpu_s(backend_pid) if backend_pid else 0.0
                await throughput_block(sessions[t.name], urls[t.name], 32, args.throughput_n, s)
                answered = s.throughput[-1]["ok"]
                if t.pid and answered:
                    used = group_cpu_s(t.pid) - cpu_before
                    s.cpu_us_per_req.append(used / answered * 1e6)
                if backend_pid and answered:
                    used = group_cpu_s(backend_pid) - backend_before
                    s.backend_cpu_us_per_req.append(used / answered * 1e6)
            for t in order:
                await streaming_block(
                    sessions[t.name], urls[t.name], 16, args.streams_n, args.chunks, samples[t.name]
                )
    finally:
        for session in sessions.values():
            await session.close()
    return samples


def summarize(samples: dict[str, Samples]) -> dict[str, Any]:
    direct = samples["direct"]
    direct_p50 = pct(direct.latency_s, 50)
    direct_rps = sum(b["rps"] for b in direct.throughput) / len(direct.throughput)
    direct_cps = sum(b["cps"] for b in direct.streaming) / len(direct.streaming)
    direct_ttft = pct(direct.ttft_s, 50)
    out: dict[str, Any] = {}
    for name, s in samples.items():
        rps = [b["rps"] for b in s.throughput]
        cps = [b["cps"] for b in s.streaming]
        mean_rps = sum(rps) / len(rps)
        mean_cps = sum(cps) / len(cps)
        out[name] = {
            "latency_p50_ms": round(pct(s.latency_s, 50) * 1000, 3),
            "latency_p99_ms": round(pct(s.latency_s, 99) * 1000, 3),
            "overhead_p50_ms": round((pct(s.latency_s, 50) - direct_p50) * 1000, 3),
            # per round: this target's block p50 minus direct's block p50 in the same round
            "overhead_p50_ms_by_round": [
                round((mine - theirs) * 1000, 3)
                for mine, theirs in zip(
                    s.latency_block_p50_s, direct.latency_block_p50_s, strict=False
                )
            ],
            "latency_samples": len(s.latency_s),
            # direct only: the backend's own time for a whole stream at concurrency 1
            "stream_whole_p50_ms": round(pct(s.stream_whole_s, 50) * 1000, 3)
            if s.stream_whole_s
            else None,
            "rps_c32_mean": round(mean_rps, 1),
            "rps_c32_blocks": [round(r, 1) for r in rps],
            "rps_vs_direct": round(mean_rps / direct_rps, 3),
            "cpu_us_per_req": round(pct(s.cpu_us_per_req, 50), 1) if s.cpu_us_per_req else None,
            "cpu_us_per_req_blocks": [round(c, 1) for c in s.cpu_us_per_req],
            "backend_cpu_us_per_req": round(pct(s.backend_cpu_us_per_req, 50), 1)
            if s.backend_cpu_us_per_req
            else None,
            "stream_ttft_p50_ms": round(pct(s.ttft_s, 50) * 1000, 3),
            "stream_ttft_added_p50_ms": round((pct(s.ttft_s, 50) - direct_ttft) * 1000, 3),
            "stream_ttft_p99_ms": round(pct(s.ttft_s, 99) * 1000, 3),
            "stream_chunks_per_s_mean": round(mean_cps, 1),
            "stream_chunks_per_s_blocks": [round(c, 1) for c in cps],
            "stream_vs_direct": round(mean_cps / direct_cps, 3),
            "errors": dict(s.errors),
        }
    return out


# --------------------------------------------------------------------------- profile


def profile_router(
    router: Target, args: argparse.Namespace, work: Path, concurrency: int
) -> dict[str, Any]:
    """py-spy samples the router process while requests run against it at ``concurrency``."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(py_spy).exists() or router.pid is None:
        return {"error": "py-spy not installed"}
    raw = work / f"router-profile-c{concurrency}.txt"
    duration = max(3, round(args.profile_s))  # py-spy takes whole seconds
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(router.pid), "--duration", str(duration),
         "--rate", "250", "--format", "raw", "--output", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)

    async def load() -> None:
        url = router.base_url + "/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + duration - 1.5
            while time.monotonic() < deadline:
                await throughput_block(session, url, concurrency, 200, Samples())

    asyncio.run(load())
    _, err = spy.communicate(timeout=duration + 30)
    if spy.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    return summarize_profile(raw.read_text())


def summarize_profile(collapsed: str, top: int = 15) -> dict[str, Any]:
    """From py-spy's collapsed stacks: self time per function and per area (the leaf frame's
    library), and inclusive time of the router's own functions."""
    self_time: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    router_inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[_short(frames[-1])] += count
        self_area[_area(frames[-1])] += count
        for name in {_short(f) for f in frames if _area(f) == "router (this project)"}:
            router_inclusive[name] += count

    def share(n: int) -> float:
        return round(100 * n / max(total, 1), 1)

    return {
        "samples": total,
        "self_top": [(name, share(n)) for name, n in self_time.most_common(top)],
        "self_by_area_pct": {a: share(n) for a, n in self_area.most_common()},
        "router_inclusive_top": [
            (name, share(n))
            for name, n in router_inclusive.most_common(top)
            if "__main__" not in name and "run_app" not in name
        ],
    }


def _path(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"
    return frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def _short(frame: str) -> str:
    parts = Path(_path(frame)).parts
    for anchor in ("site-packages", "python3.11"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{frame.partition(' (')[0]} ({'/'.join(parts[-2:])})"


AREAS = [
    ("aiohttp/client", "aiohttp client (upstream call)"),
    ("aiohttp/web", "aiohttp server (request/response)"),
    ("aiohttp/", "aiohttp other (streams, parser, connector)"),
    ("asyncio/", "asyncio event loop and sockets"),
    ("selectors", "asyncio event loop and sockets"),
    ("socket", "asyncio event loop and sockets"),
    ("json/", "json"),
    ("prometheus_client/", "prometheus-client"),
    ("pydantic", "pydantic"),
    ("yarl/", "yarl/multidict"),
    ("multidict/", "yarl/multidict"),
]


def _area(frame: str) -> str:
    path = _path(frame)
    if "site-packages" not in path and (path.startswith("router/") or "/router/" in path):
        return "router (this project)"
    for marker, area in AREAS:
        if marker in path:
            return area
    return "other"


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\n{'target':<28}{'p50 ms':>8}{'p99 ms':>8}{'+p50 ms':>9}{'CPU us':>8}"
        f"{'req/s c32':>11}{'x direct':>9}{'ttft p50':>9}{'+ttft':>7}{'chunks/s':>10}"
        f"{'x direct':>9}  errors"
    )
    for name, r in results.items():
        cpu = r["cpu_us_per_req"]
        print(
            f"{name:<28}{r['latency_p50_ms']:>8.2f}{r['latency_p99_ms']:>8.2f}"
            f"{r['overhead_p50_ms']:>9.2f}{cpu if cpu is not None else '-':>8}"
            f"{r['rps_c32_mean']:>11.0f}{r['rps_vs_direct']:>9.2f}"
            f"{r['stream_ttft_p50_ms']:>9.2f}{r['stream_ttft_added_p50_ms']:>7.2f}"
            f"{r['stream_chunks_per_s_mean']:>10.0f}{r['stream_vs_direct']:>9.2f}"
            f"  {r['errors'] or ''}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-n", type=int, default=300, help="requests per latency block")
    parser.add_argument("--throughput-n", type=int, default=2000, help="requests per c=32 block")
    parser.add_argument("--streams-n", type=int, default=96, help="streams per c=16 block")
    parser.add_argument("--chunks", type=int, default=64, help="SSE chunks per stream")
    parser.add_argument("--chunk-interval-ms", type=float, default=2.0)
    parser.add_argument(
        "--same-answer",
        action="store_true",
        help="the backend's whole answer has the stream's tokens (use with interval 0: the "
        "router streams non-streaming requests from the backend)",
    )
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--targets", nargs="+", default=["router", "nginx", "litellm"],
        choices=["router", "router-whole", "aiohttp-floor", "nginx", "litellm"],
    )  # fmt: skip
    parser.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV)
    parser.add_argument("--profile", action="store_true", help="py-spy the router afterwards")
    parser.add_argument("--profile-s", type=int, default=12)
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2,
        help="proxies on CPU 0, backend and client on CPU 1 (default with 2+ CPUs)",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also run the router of this source tree (e.g. `git archive REV | tar -x -C DIR`)",
    )
    parser.add_argument("--baseline-label", default="baseline", help="its name in the table")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    proxy_cpu, load_cpu = (PROXY_CPU, LOAD_CPU) if args.pin else (None, None)
    if load_cpu is not None:
        os.sched_setaffinity(0, {int(load_cpu)})  # this client; threads started later inherit

    report: dict[str, Any] = {
        "benchmark": "proxy_overhead",
        "command": "python -m bench.proxy_overhead " + " ".join(sys.argv[1:]),
        "machine_before": machine(),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="mf-proxy-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        backend = start_backend(
            stack, work, args.chunks, args.chunk_interval_ms, args.same_answer, load_cpu
        )
        targets = [backend]
        base = backend.base_url
        starters = {
            "router": lambda: start_router(stack, work, base, proxy_cpu),
            "router-whole": lambda: start_router(
                stack,
                work,
                base,
                proxy_cpu,
                name="modelfleet, stream_upstream off",
                settings={"stream_upstream": False},
            ),
            "aiohttp-floor": lambda: start_floor(stack, work, base, proxy_cpu),
            "nginx": lambda: start_nginx(stack, work, base, proxy_cpu),
            "litellm": lambda: start_litellm(stack, work, base, args.litellm_venv, proxy_cpu),
        }
        if args.baseline_tree:
            label = f"modelfleet router {args.baseline_label}"
            targets.append(
                start_router(stack, work, base, proxy_cpu, args.baseline_tree.resolve(), label)
            )
        for name in args.targets:
            target = starters[name]()
            if target is None:
                report["skipped"].append(f"{name}: program not installed")
                print(f"skipping {name}: not installed")
            else:
                targets.append(target)
        report["targets"] = {t.name: {"url": t.base_url, "version": t.version} for t in targets}
        samples = asyncio.run(measure(targets, args))
        report["results"] = summarize(samples)
        router = next((t for t in targets if t.name == "modelfleet router"), None)
        if args.profile and router is not None:
            for concurrency in (1, 32):
                print(f"profiling the router at concurrency {concurrency} ...")
                report[f"router_profile_c{concurrency}"] = profile_router(
                    router, args, work, concurrency
                )
        report["machine_after"] = machine()
    print_table(report["results"])
    for concurrency in (1, 32):
        profile: dict[str, Any] | None = report.get(f"router_profile_c{concurrency}")
        if not profile:
            continue
        what = profile.get("error") or f"{profile['samples']} samples"
        print(f"\nrouter profile at concurrency {concurrency}: {what}")
        for title, key in (
            ("self time by area", "self_by_area_pct"),
            ("self time, top functions", "self_top"),
            ("router functions, inclusive", "router_inclusive_top"),
        ):
            rows = profile.get(key) or {}
            items = rows.items() if isinstance(rows, dict) else rows
            print(f"  {title} (% of samples):")
            for name, share in list(items)[:10]:
                print(f"    {share:5.1f}  {name}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
