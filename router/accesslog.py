"""The access log: one JSON object per line, the format docs/router.md describes.

The benchmark's trace converter reads it, so keys only ever get added, never renamed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from typing import IO, Any

from .config import ConfigError

log = logging.getLogger("modelfleet.router")


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
        self._failing = False  # a write failed: said once, until one succeeds again

    @property
    def enabled(self) -> bool:
        """False when no access log is configured: callers skip building the record."""
        return self._file is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        record = {"ts": round(time.time(), 6), **record}
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:  # a full or lost disk costs log lines, never the request
            if not self._failing:
                log.warning(
                    "access_log: cannot write to %s: %s (lines are lost until it works again)",
                    self.target,
                    exc.strerror or exc,
                )
            self._failing = True
            return
        if self._failing:
            log.warning("access_log: writing to %s again", self.target)
        self._failing = False

    def close(self) -> None:
        if self._file is not None and self._file is not sys.stdout:
            with contextlib.suppress(OSError):  # what a full disk still holds is lost
                self._file.close()
        self._file = None
