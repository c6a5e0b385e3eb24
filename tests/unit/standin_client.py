"""What the stand-in tests share: one HTTP call, the stand-in's own stats, a polling guard."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

# Slow enough that a held stream is still running while a test looks around (a 16-token
# reply takes 8 s); the test closes it long before, and follow-up requests ask for 1 token.
HOLD_TOKENS_PER_S = 2


def call(
    url: str,
    path: str,
    body: Any = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; returns (status, parsed JSON or text). HTTP errors are returned, not raised.

    NDJSON stays text (tests split it themselves); any other JSON is parsed.
    """
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers["Content-Type"]
    ctype = ctype or ""
    if "json" in ctype and "ndjson" not in ctype:
        return status, json.loads(raw)
    return status, raw.decode()


def stats(url: str) -> dict[str, Any]:
    """The stand-in's own counters (``/standin/stats``: loads, pending, ...)."""
    return call(url, "/standin/stats")[1]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll until ``condition`` holds (a guard against hangs, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.01)
