"""Pull models into an Ollama instance through its API, printing progress (stdlib only).

    python3 ollama-pull.py --host 127.0.0.1 --port 11434 llama3.1:8b gemma3:270m

Streams ``POST /api/pull`` (NDJSON) for each model in turn and prints a line per status change
and per 10 % of each layer, so a long pull shows life in pyinfra's output. Exits 1 naming the
model on the first error line, a missing ``success`` or a server that does not answer.
``--host`` is where the instance is reached from this host: its bind address, 127.0.0.1 when it
listens on every address (the deploy passes it; an IPv6 literal in brackets).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def wait_for(address: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/api/version", timeout=2):
                return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                sys.exit(f"ollama-pull: no Ollama answering on {address}")
            time.sleep(0.5)


def pull(address: str, model: str) -> None:
    body = json.dumps({"model": model, "stream": True}).encode()
    request = urllib.request.Request(
        f"http://{address}/api/pull",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    last_status, last_decile, done = "", -1, False
    try:
        with urllib.request.urlopen(request, timeout=3600) as resp:
            for raw in resp:
                if not raw.strip():
                    continue
                event = json.loads(raw)
                if "error" in event:
                    sys.exit(f"ollama-pull: {model}: {event['error']}")
                status = str(event.get("status", ""))
                total, completed = event.get("total"), event.get("completed")
                if total and completed is not None:
                    decile = int(completed * 10 / total)
                    if decile != last_decile or status != last_status:
                        print(f"{model}: {status} {decile * 10}% of {total} bytes", flush=True)
                        last_decile = decile
                elif status != last_status:
                    print(f"{model}: {status}", flush=True)
                last_status = status
                done = done or status == "success"
    except urllib.error.HTTPError as exc:
        sys.exit(
            f"ollama-pull: {model}: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        )
    if not done:
        sys.exit(f"ollama-pull: {model}: the pull stream ended without 'success'")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1", help="the instance's address from here")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the API")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    address = f"{args.host}:{args.port}"
    wait_for(address, args.wait)
    for model in args.models:
        pull(address, model)


if __name__ == "__main__":
    main()
