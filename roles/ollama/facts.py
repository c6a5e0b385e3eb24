"""Facts of the Ollama role: what an Ollama instance holds, asked through its own API."""

from __future__ import annotations

import json

from pyinfra.api import FactBase


def normalize_tag(name: str) -> str:
    """Ollama's own spelling of a model name: a tag without ``:`` means ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class OllamaModels(FactBase[list[str] | None]):
    """Model tags an Ollama instance on ``port`` has on disk (``GET /api/tags``), sorted.

    None when the instance does not answer (not installed or not started yet)::

        ["gemma3:270m", "llama3.1:8b"]
    """

    def requires_command(self, port: int) -> str:
        return "curl"

    def command(self, port: int) -> str:
        return f"curl -sf --max-time 5 http://127.0.0.1:{int(port)}/api/tags || true"

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
