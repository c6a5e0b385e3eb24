"""The access log: one JSON object per line, the format docs/router.md describes.

The benchmark's trace converter reads it, so keys only ever get added, never renamed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from .config import ConfigError


class AccessLog:
    """Appends to ``target`` (``-``: stdout; None: off). A file that cannot be opened is a
    :class:`ConfigError` naming the key, the path and why, at start and on reload alike."""

    def __init__(self, target: str | None) -> None:
        self._file: IO[str] | None = None
        if target == "-":
            self._file = sys.stdout
        elif target:
            try:
                self._file = open(target, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
            except OSError as exc:
                raise ConfigError(
                    f"access_log: cannot append to {target}: {exc.strerror or exc} "
                    "(the directory must exist and be writable by the router's user; a deployed "
                    "router's unit makes /var/log/modelfleet for it)"
                ) from None
        self.target = target

    @property
    def enabled(self) -> bool:
        """False when no access log is configured: callers skip building the record."""
        return self._file is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        record = {"ts": round(time.time(), 6), **record}
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None
