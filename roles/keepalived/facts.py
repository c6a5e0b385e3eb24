"""Facts the keepalived role plans with."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class InterfaceOf(FactBase[str | None]):
    """The network interface that holds ``address`` on the host (``"eth0"``), or None.

    From ``ip -o addr show to ADDRESS``: ``2: eth0    inet 10.89.0.5/24 brd ...``.
    """

    def requires_command(self, address: str) -> str:
        return "ip"

    def command(self, address: str) -> str:
        return f"ip -o addr show to {shlex.quote(address)}"

    @staticmethod
    def default() -> str | None:
        return None

    def process(self, output: list[str]) -> str | None:
        for line in output:
            parts = line.split()
            if len(parts) >= 2:
                return parts[1].split("@", 1)[0]
        return None
