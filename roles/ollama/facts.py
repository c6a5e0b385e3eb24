"""Facts of the Ollama role: what an Ollama instance holds, asked through its own API."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase

from modelfleet.roles.addresses import local_host


def normalize_tag(name: str) -> str:
    """Ollama's own spelling of a model name: a tag without ``:`` means ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class OllamaModels(FactBase[list[str] | None]):
    """Model tags an Ollama instance on ``port`` has on disk (``GET /api/tags``), sorted; asked
    at its ``bind`` address (127.0.0.1 for a wildcard, ``roles/addresses.py``).

    None when the instance does not answer (not installed or not started yet)::

        ["gemma3:270m", "llama3.1:8b"]
    """

    def requires_command(self, port: int, bind: str = "0.0.0.0") -> str:
        return "curl"

    def command(self, port: int, bind: str = "0.0.0.0") -> str:
        url = f"http://{local_host(bind)}:{int(port)}/api/tags"
        return f"curl -sf --max-time 5 {shlex.quote(url)} || true"

    @staticmethod
    def default() -> list[str] | None:
        return None

    def process(self, output: list[str]) -> list[str] | None:
        text = "\n".join(output).strip()
        if not text:
            return None
        try:
            models = json.loads(text).get("models") or []
        except (ValueError, AttributeError):
            return None
        return sorted(normalize_tag(str(m.get("name") or m.get("model"))) for m in models)
