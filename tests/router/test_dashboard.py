"""The dashboard in a real headless Debian chromium, against a live router and stand-ins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.browser import run_chromium
from tests.router.conftest import ADMIN_TOKEN

MODEL = "qwen2.5:0.5b"

pytestmark = pytest.mark.browser


async def dump_dom(url: str, profile: Path) -> str:
    """Load ``url`` in headless chromium, let its polling run, return the final DOM."""
    return await asyncio.to_thread(run_chromium, url, profile, "--dump-dom")


async def test_dashboard_shows_hosts_models_and_decisions(
    ollama, make_router, tmp_path: Path
) -> None:
    a, b = ollama(models=[MODEL]), ollama(models=[MODEL])
    client: Any = await make_router(
        [
            {"name": "gpu-a", "url": a.url, "host": "host-a", "vram_mb": 8192},
            {"name": "gpu-b", "url": b.url, "host": "host-b", "vram_mb": 8192},
        ],
        fleet="lab",
    )
    await client.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False})
    url = str(client.make_url("/dashboard")) + f"#token={ADMIN_TOKEN}"
    dom = await dump_dom(url, tmp_path / "profile")

    assert 'id="fleet">lab<' in dom
    assert 'id="healthy">2/2<' in dom
    assert 'data-host="host-a"' in dom and 'data-host="host-b"' in dom
    assert dom.count('class="badge healthy"') == 2
    assert f'data-model="{MODEL}"' in dom and "loaded" in dom
    assert '<td class="reason">load-fits</td>' in dom
    assert "width:" in dom  # a VRAM bar was drawn
    assert ADMIN_TOKEN not in dom  # the fragment was wiped from the page


async def test_dashboard_asks_for_the_token(ollama, make_router, tmp_path: Path) -> None:
    client: Any = await make_router([{"name": "o", "url": ollama(models=[MODEL]).url}])
    dom = await dump_dom(str(client.make_url("/dashboard")), tmp_path / "profile")
    assert '<form id="login">' in dom  # no longer hidden
    assert "admin token needed" in dom
    wrong = await dump_dom(
        str(client.make_url("/dashboard")) + "#token=wrong", tmp_path / "profile2"
    )
    assert "admin API needs" in wrong
