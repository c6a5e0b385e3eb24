"""A load generator for fleet changes: clients streaming chat through the router, non-stop.

Each of ``--clients`` clients sends ``POST /v1/chat/completions`` with ``"stream": true``, reads
the stream to its end, and starts the next request at once. Every request is recorded as:

- ``ok``: HTTP 200 and the stream ended properly (a ``finish_reason`` and ``data: [DONE]``);
- ``failed``: no stream at all (connection refused or reset before an answer, or an HTTP error
  status): the client saw an error;
- ``cut``: the stream started (HTTP 200) but ended without finishing (connection closed or
  reset mid-stream, an error chunk, or no ``[DONE]``): the client got half an answer.

It runs until SIGTERM or SIGINT, then lets the requests in flight finish (they are recorded
like any other) and writes a JSON list of records to ``--out``. Start and end times are
``time.time()`` seconds, so a caller can line them up with what it changed meanwhile.

    .venv/bin/python -m bench.rolling_load --url http://10.88.0.5:11434 --model gemma3-270m \
        --clients 4 --out /tmp/load.json      # stop it with kill -TERM <pid>

Traffic goes only to ``--url`` (the router on loopback or on a container host of the fleet).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp


@dataclass
class Record:
    client: int
    started: float
    ended: float
    outcome: str  # ok | failed | cut
    status: int | None
    ttft_s: float | None
    chunks: int
    backend: str | None
    error: str | None


def classify(status: int | None, chunks: int, finished: bool, done: bool) -> str:
    """``ok``, ``failed`` (no stream) or ``cut`` (a stream that did not finish)."""
    if status != 200:
        return "failed"
    return "ok" if finished and done else "cut"


async def one_request(
    session: aiohttp.ClientSession, url: str, model: str, max_tokens: int, client: int
) -> Record:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"Count from 1 to 20, client {client}."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    started = time.time()
    status: int | None = None
    ttft: float | None = None
    chunks, finished, done = 0, False, False
    backend: str | None = None
    error: str | None = None
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
            status = resp.status
            backend = resp.headers.get("X-Modelfleet-Backend")
            if status != 200:
                error = (await resp.text())[:200]
            else:
                async for raw in resp.content:
                    line = raw.decode(errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        error = json.dumps(chunk["error"])[:200]
                        break
                    chunks += 1
                    if ttft is None:
                        ttft = time.time() - started
                    for choice in chunk.get("choices", []):
                        if choice.get("finish_reason"):
                            finished = True
    except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    return Record(
        client=client,
        started=started,
        ended=time.time(),
        outcome=classify(status, chunks, finished, done),
        status=status,
        ttft_s=ttft,
        chunks=chunks,
        backend=backend,
        error=error,
    )


async def run(args: argparse.Namespace) -> list[Record]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    records: list[Record] = []
    timeout = aiohttp.ClientTimeout(total=args.request_timeout_s)

    async def client(number: int) -> None:
        # A fresh connection per request, as many clients do; keep-alive would hide a restart
        # of the router behind connections opened before it.
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            while not stop.is_set():
                records.append(
                    await one_request(session, args.url, args.model, args.max_tokens, number)
                )

    ready = Path(args.out).with_suffix(".started")
    ready.write_text(str(time.time()))
    await asyncio.gather(*(client(n) for n in range(args.clients)))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the router, e.g. http://127.0.0.1:11434")
    parser.add_argument("--model", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--request-timeout-s", type=float, default=300)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    records = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps([asdict(r) for r in records]))


if __name__ == "__main__":
    main()
