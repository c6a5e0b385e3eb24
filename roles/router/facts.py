"""Facts the router role compares against: the live release and the Python that runs it."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from modelfleet.roles.addresses import local_host


class PythonVersion(FactBase[str | None]):
    """``major.minor`` of the host's ``python3`` (``"3.11"``), or None when it is missing."""

    def requires_command(self) -> str:
        return "python3"

    def command(self) -> str:
        return "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"

    @staticmethod
    def default() -> str | None:
        return None

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output else None


class RouterReady(FactBase[bool]):
    """Whether the router on ``port`` answers ``/readyz`` with 200 right now; asked at its
    ``bind`` address (127.0.0.1 for a wildcard, ``roles/addresses.py``)."""

    def requires_command(self, port: int, bind: str = "0.0.0.0") -> str:
        return "curl"

    def command(self, port: int, bind: str = "0.0.0.0") -> str:
        url = shlex.quote(f"http://{local_host(bind)}:{int(port)}/readyz")
        return f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 3 {url} || true"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "200"
