"""Router soak under injected faults (issue 9): nothing may be lost silently.

Two Ollama stand-ins (``deploy/lab/standins/ollama.py``, separate processes) serve the same model
behind the router (``python -m modelfleet.router``, a process), all on 127.0.0.1. Eight clients send
streaming ``/api/chat`` and ``/v1/chat/completions`` requests, each with its own content, for
``--duration`` seconds while a schedule injects faults (times as shares of the duration):

* all along: two poisoned requests every 5 s (the same two bodies each time; backend 500s
  on them, like llama-server's ``tools param requires --jinja flag``);
* 0.15: backend ``b`` is killed (SIGKILL) with streams in flight; restarted at 0.25 (its
  share "after detection" is then 0 by construction: it is dead);
* 0.35 - 0.55: ``b`` hangs: accepts requests and never answers (its probe still answers);
* 0.65 - 0.90: ``b`` answers 500 to every inference request (its probe still answers);
* at 0.02, 0.26 and 0.56: a client that sends a long streaming request and stops reading
  (it holds the connection open for 0.2 of the duration).

Each fault starts only once the router has taken ``b`` back after the previous one (waited
for up to 20 s), so each detection is measured from a healthy start.

Every ordinary request ends in exactly one class:

* ``succeeded``: 200 and a complete answer (Ollama: the last line has ``done: true``; OpenAI:
  ``[DONE]``); ``retried`` counts those that needed another backend (``X-Modelfleet-Attempts``
  above 1), a subset;
* ``failed_clear``: an error status with a JSON error body in the API's shape, or a 200
  stream that ends with an error line;
* ``lost``: anything else (connection dropped without an error, a stream cut without an error
  line, nothing within the client timeout). It must be 0.

The faulty backend's share after detection: for each fault, from the moment the router first
reports ``b`` unhealthy (``/admin/state``, polled every 0.2 s) to the end of the fault, the
share of inference requests that reached ``b`` (the stand-ins' own counters).

    .venv/bin/python -m bench.router_soak --duration 120 --out bench/results/router_soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.proxy_overhead import free_port, wait_ready

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MODEL = "qwen2.5:0.5b"
POISON = "<<poison>>"
ADMIN = "soak-admin-token"
CONCURRENCY = 8


def get_json(url: str, timeout: float = 2.0, token: str | None = None) -> Any:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: dict[str, Any], timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.read()


@dataclass
class Standin:
    """One Ollama stand-in process; ``restart`` keeps its port and its pulled models."""

    name: str
    port: int
    models_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            "OLLAMA_MODELS": str(self.models_dir),
            "OLLAMA_NUM_PARALLEL": "4",
            "STANDIN_VRAM_MB": "8192",
            "STANDIN_TOKENS_PER_S": "100",
            "STANDIN_LOAD_MS_PER_GB": "500",
            "STANDIN_POISON": POISON,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [PYTHON, str(REPO / "deploy/lab/standins/ollama.py"), "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.url + "/api/version", 30, self.proc, self.log)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def fault(self, mode: str) -> None:
        post_json(self.url + "/standin/faults", {"mode": mode})

    def inference_requests(self) -> int | None:
        try:
            return int(get_json(self.url + "/standin/stats")["inference_requests"])
        except OSError:
            return None  # killed


@dataclass
class Tally:
    phase: str = ""
    sent: int = 0
    succeeded: int = 0
    retried: int = 0
    failed_clear: int = 0
    lost: int = 0
    failed_by_status: Counter[str] = field(default_factory=Counter)
    lost_examples: list[str] = field(default_factory=list)


@dataclass
class FaultWindow:
    name: str
    start: float
    end: float
    detected_at: float | None = None
    counts_at_detection: tuple[int, int] | None = None
    counts_at_end: tuple[int, int] | None = None

    def report(self, t0: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fault": self.name,
            "from_s": round(self.start - t0, 1),
            "to_s": round(self.end - t0, 1),
            "detected_after_s": None
            if self.detected_at is None
            else round(self.detected_at - self.start, 2),
        }
        if self.counts_at_detection and self.counts_at_end:
            a = self.counts_at_end[0] - self.counts_at_detection[0]
            b = self.counts_at_end[1] - self.counts_at_detection[1]
            out["requests_after_detection"] = {"a": a, "b": b}
            out["faulty_share_after_detection"] = round(b / (a + b), 4) if a + b else None
        return out


class Soak:
    def __init__(self, duration: float, workdir: Path) -> None:
        self.duration = duration
        self.workdir = workdir
        self.a = Standin("a", free_port(), workdir / "models-a", workdir / "a.log")
        self.b = Standin("b", free_port(), workdir / "models-b", workdir / "b.log")
        self.router_port = free_port()
        self.access_log = workdir / "access.jsonl"
        self.router: subprocess.Popen[bytes] | None = None
        self.tally = Tally("all")
        self.phases: dict[str, Tally] = {}
        self.phase = "poisoned requests only"
        self.poison = Counter[str]()
        self.stopped_readers = 0
        self.windows: list[FaultWindow] = []
        self.t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    # -- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        for standin in (self.a, self.b):
            standin.start()
            post_json(standin.url + "/api/pull", {"model": MODEL, "stream": False})
        config = {
            "listen": f"127.0.0.1:{self.router_port}",
            "admin_token": ADMIN,
            "access_log": str(self.access_log),
            "refresh_interval_s": 1.0,
            "first_byte_timeout_s": 3.0,
            "client_write_timeout_s": 3.0,
            "stall_timeout_s": 10.0,
            "load_timeout_s": 30.0,
            "health": {"interval_s": 1.0, "timeout_s": 1.0, "max_backoff_s": 8.0},
            "queue": {"max_per_model": 64, "deadline_s": 30.0},
            "backends": [
                {"name": s.name, "url": s.url, "kind": "ollama", "slots": 4}
                for s in (self.a, self.b)
            ],
        }
        path = self.workdir / "router.yaml"
        path.write_text(yaml.safe_dump(config))
        with (self.workdir / "router.log").open("ab") as out:
            self.router = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "modelfleet.router",
                    "--config",
                    str(path),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.url + "/readyz", 30, self.router, self.workdir / "router.log")
        # both copies resident before the clock starts: the soak is about faults, not loads
        for name in ("a", "b"):
            request = urllib.request.Request(
                f"{self.url}/admin/backends/{name}/load",
                data=json.dumps({"model": MODEL}).encode(),
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            urllib.request.urlopen(request, timeout=60).read()

    def stop(self) -> None:
        if self.router is not None and self.router.poll() is None:
            self.router.terminate()
            self.router.wait(10)
        self.a.stop()
        self.b.stop()

    # -- clients ----------------------------------------------------------------------------

    async def one_request(self, session: aiohttp.ClientSession, n: int) -> None:
        openai = n % 4 == 3
        content = f"soak request {n}: tell me something"
        if openai:
            path = "/v1/chat/completions"
            body: dict[str, Any] = {"max_tokens": 12, "stream": True}
        else:
            path = "/api/chat"
            body = {"options": {"num_predict": 12}, "stream": True}
        body |= {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        self.tally.sent += 1
        try:
            async with session.post(self.url + path, json=body) as resp:
                text = await resp.text()
                outcome = classify(resp.status, text, openai)
                attempts = int(resp.headers.get("X-Modelfleet-Attempts", "1"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = f"lost: {type(exc).__name__}: {exc}"
            attempts = 1
        phase = self.phases.setdefault(self.phase, Tally(self.phase))
        phase.sent += 1
        for tally in (self.tally, phase):
            if outcome == "ok":
                tally.succeeded += 1
                tally.retried += attempts > 1
            elif outcome.startswith("lost"):
                tally.lost += 1
                if len(tally.lost_examples) < 10:
                    tally.lost_examples.append(f"{path} #{n}: {outcome}")
            else:
                tally.failed_clear += 1
                tally.failed_by_status[outcome] += 1

    async def worker(self, session: aiohttp.ClientSession, index: int, end: float) -> None:
        n = index
        while time.monotonic() < end:
            await self.one_request(session, n)
            n += CONCURRENCY

    async def poisoner(self, session: aiohttp.ClientSession, end: float) -> None:
        while time.monotonic() < end:
            for which in (1, 2):
                content = f"{POISON} number {which}"  # the same two bodies every time
                body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
                try:
                    async with session.post(self.url + "/api/chat", json=body) as resp:
                        answer = await resp.text()
                        if resp.status == 500 and "stand-in poison" in answer:
                            self.poison["answered with the backend's 500"] += 1
                        else:
                            self.poison[f"other: {resp.status} {answer[:80]}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.poison[f"lost: {type(exc).__name__}"] += 1
            await asyncio.sleep(5)

    async def stop_reading(self) -> None:
        """A client that sends a long streaming request and never reads the answer."""
        self.stopped_readers += 1
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.router_port))
        _, writer = await asyncio.open_connection(sock=sock)
        content = f"stop reading {self.stopped_readers}"
        body = json.dumps(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": content}],
                # stand-in only: a long, fast answer (the fake model stops after ~12 tokens
                # at 100 tokens/s), so the kernel's socket buffers fill within seconds
                "options": {
                    "num_predict": 200_000,
                    "standin_tokens": 200_000,
                    "standin_tokens_per_s": 20_000,
                },
            }
        ).encode()
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
        await asyncio.sleep(self.duration * 0.2)  # never reads; then goes away
        writer.close()

    # -- faults and detection ---------------------------------------------------------------

    def counts(self) -> tuple[int, int] | None:
        a, b = self.a.inference_requests(), self.b.inference_requests()
        return None if a is None or b is None else (a, b)

    async def monitor(self, end: float) -> None:
        """Note when the router first reports ``b`` unhealthy inside each fault window."""
        loop = asyncio.get_running_loop()
        while time.monotonic() < end:
            now = time.monotonic()
            for window in self.windows:
                if window.start <= now < window.end and window.detected_at is None:
                    state = await loop.run_in_executor(
                        None, lambda: get_json(self.url + "/admin/state", token=ADMIN)
                    )
                    b = next(x for x in state["backends"] if x["name"] == "b")
                    if not b["healthy"]:
                        window.detected_at = time.monotonic()
                        window.counts_at_detection = await loop.run_in_executor(
                            None, self.counts_or_zero_b
                        )
            await asyncio.sleep(0.2)

    def counts_or_zero_b(self) -> tuple[int, int] | None:
        """While ``b`` is dead it receives nothing: count it from its restart on."""
        a, b = self.a.inference_requests(), self.b.inference_requests()
        return None if a is None else (a, b or 0)

    async def schedule(self) -> None:
        loop = asyncio.get_running_loop()
        d, t0 = self.duration, self.t0

        async def at(share: float) -> None:
            await asyncio.sleep(max(0.0, t0 + share * d - time.monotonic()))

        async def run(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(None, fn, *args)

        kill = FaultWindow("b killed mid-stream", t0 + 0.15 * d, t0 + 0.25 * d)
        hang = FaultWindow("b hangs (probe answers)", t0 + 0.35 * d, t0 + 0.55 * d)
        fail = FaultWindow(
            "b answers 500 to everything (probe answers)", t0 + 0.65 * d, t0 + 0.9 * d
        )
        self.windows = [kill, hang, fail]
        readers = [asyncio.ensure_future(self._reader_at(at, s)) for s in (0.02, 0.26, 0.56)]

        await at(0.15)
        self.phase = kill.name
        await run(self.b.kill)
        await at(0.25)
        kill.counts_at_end = await run(self.counts_or_zero_b)  # b is dead: it got nothing
        self.phase = "recovery"
        await run(self.b.start)
        await at(0.35)
        for window, mode, ends in ((hang, "hang", 0.55), (fail, "500", 0.9)):
            await run(self.wait_healthy)
            window.start = time.monotonic()
            self.phase = window.name
            await run(self.b.fault, mode)
            await at(ends)
            window.end = max(window.end, time.monotonic())
            window.counts_at_end = await run(self.counts)
            await run(self.b.fault, "ok")
            self.phase = "recovery"
        await asyncio.gather(*readers)

    def wait_healthy(self, limit_s: float = 20.0) -> None:
        """Until the router has ``b`` back in rotation (bounded)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            state = get_json(self.url + "/admin/state", token=ADMIN)
            if next(x for x in state["backends"] if x["name"] == "b")["healthy"]:
                return
            time.sleep(0.2)

    async def _reader_at(self, at: Any, share: float) -> None:
        await at(share)
        await self.stop_reading()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self.t0 = time.monotonic()
            end = self.t0 + self.duration
            tasks = [asyncio.ensure_future(self.schedule())]
            tasks += [asyncio.ensure_future(self.monitor(end))]
            tasks += [asyncio.ensure_future(self.poisoner(session, end))]
            tasks += [
                asyncio.ensure_future(self.worker(session, i, end)) for i in range(CONCURRENCY)
            ]
            await asyncio.gather(*tasks)


def classify(status: int, text: str, openai: bool) -> str:
    """ "ok", "failed: <status>" (clear) or "lost: <why>"."""
    if status != 200:
        try:
            error = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            return f"lost: {status} without a JSON error body"
        shaped = isinstance(error, dict) if openai else isinstance(error, str)
        return f"failed: {status}" if shaped else f"lost: {status} error not in the API shape"
    if openai:
        events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        if any('"error"' in e for e in events):
            return "failed: 200 with an error event"
        return "ok" if events and events[-1] == "[DONE]" else "lost: stream ended early"
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    if any("error" in line for line in lines):
        return "failed: 200 with an error line"
    return "ok" if lines and lines[-1].get("done") is True else "lost: stream ended early"


def access_log_summary(path: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    statuses = Counter(str(r.get("status")) for r in records)
    cut_off = [r for r in records if "read nothing" in (r.get("error") or "")]
    return {
        "records": len(records),
        "statuses": dict(sorted(statuses.items())),
        "retried": sum(1 for r in records if (r.get("attempts") or 1) > 1),
        "clients_cut_off_for_not_reading": len(cut_off),
        "errors": dict(
            Counter(
                f"{r.get('status')}: {(r.get('error') or '')[:70]}"
                for r in records
                if r.get("error")
            )
        ),
        "by_backend": dict(Counter(str(r.get("backend")) for r in records)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    loadavg_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="router-soak-") as tmp:
        soak = Soak(args.duration, Path(tmp))
        try:
            soak.start()
            asyncio.run(soak.run())
            time.sleep(1.0)  # the router writes its last access-log lines
            log = access_log_summary(soak.access_log)
        finally:
            soak.stop()
    t = soak.tally
    result = {
        "benchmark": "router_soak",
        "command": "python -m bench.router_soak " + " ".join(sys.argv[1:]),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "loadavg_before": loadavg_before,
            "loadavg_after": os.getloadavg(),
        },
        "settings": {
            "duration_s": args.duration,
            "concurrency": CONCURRENCY,
            "backends": "2 Ollama stand-ins, same model, 4 slots each, 100 tokens/s",
            "request": "streaming, 12 tokens, 3 of 4 /api/chat, 1 of 4 /v1/chat/completions",
            "router": "first_byte_timeout_s 3, client_write_timeout_s 3, health interval 1 s",
        },
        "requests": {
            "sent": t.sent,
            "succeeded": t.succeeded,
            "retried_transparently": t.retried,
            "failed_with_clear_status": t.failed_clear,
            "lost_silently": t.lost,
            "failed_by_status": dict(t.failed_by_status),
            "lost_examples": t.lost_examples,
        },
        "by_phase": {
            name: {
                "sent": p.sent,
                "succeeded": p.succeeded,
                "retried_transparently": p.retried,
                "failed_with_clear_status": p.failed_clear,
                "lost_silently": p.lost,
            }
            for name, p in soak.phases.items()
        },
        "poisoned_requests": dict(soak.poison),
        "clients_that_stopped_reading": soak.stopped_readers,
        "faults": [w.report(soak.t0) for w in soak.windows],
        "router_access_log": log,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
