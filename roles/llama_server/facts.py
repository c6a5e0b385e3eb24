"""Facts of the llama-server role: what a router-mode server lists, by its own API."""

from __future__ import annotations

import json

from pyinfra.api import FactBase


class LlamaServerModels(FactBase[dict[str, str] | None]):
    """Models a router-mode llama-server on ``port`` lists (``GET /models``), with their status.

    None when the server does not answer::

        {"gemma3-270m": "loaded", "llama3.2-3b": "unloaded"}
    """

    def requires_command(self, port: int) -> str:
        return "curl"

    def command(self, port: int) -> str:
        return f"curl -sf --max-time 5 http://127.0.0.1:{int(port)}/models || true"

    @staticmethod
    def default() -> dict[str, str] | None:
        return None

    def process(self, output: list[str]) -> dict[str, str] | None:
        try:
            entries = json.loads("\n".join(output)).get("data") or []
        except (ValueError, AttributeError):
            return None
        return {
            str(e.get("id")): str((e.get("status") or {}).get("value", "unknown")) for e in entries
        }
