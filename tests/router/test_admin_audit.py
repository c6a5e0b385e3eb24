"""Operations under strain: an access log that cannot be written, metrics after a reload,
and what /admin/state (the dashboard's data) shows of a backend's URL."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient

from modelfleet.router.app import create_app
from modelfleet.router.config import ConfigError, load_config
from tests.router.conftest import ADMIN_TOKEN, admin

MODEL = "qwen2.5:0.5b"


def gen(prompt: str = "x") -> dict:
    return {"model": MODEL, "prompt": prompt, "stream": False}


async def test_a_full_disk_under_the_access_log_fails_no_request(ollama, make_router, caplog):
    """/dev/full takes the open and refuses every write (ENOSPC), as a full /var/log does:
    the line is lost and the operator told, but the client still gets its answer."""
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], access_log="/dev/full")
    caplog.set_level(logging.WARNING)
    for prompt in ("x", "y"):
        resp = await client.post("/api/generate", json=gen(prompt))
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["done"] is True
    stream = await client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert stream.status == 200 and b"[DONE]" in await stream.read()
    warnings = [r for r in caplog.records if "access_log" in r.getMessage()]
    assert len(warnings) == 1  # said once, not once per request
    assert "/dev/full" in warnings[0].getMessage()


async def test_a_backend_dropped_by_a_reload_leaves_no_metric_series(
    ollama, aiohttp_client, tmp_path: Path
):
    """A removed backend must not go on reading healthy (1) in /metrics for ever, nor a
    model no backend serves any more keep its last queue depth."""
    first, second = ollama(models=[MODEL]), ollama(models=["llama3.2:1b"])
    path = tmp_path / "router.yaml"
    raw = {
        "listen": "127.0.0.1:0",
        "admin_token": ADMIN_TOKEN,
        "backends": [
            {"name": "first", "url": first.url},
            {"name": "second", "url": second.url, "models": [{"name": "llama3.2:1b"}]},
        ],
    }
    path.write_text(yaml.safe_dump(raw))
    client: TestClient = await aiohttp_client(create_app(load_config(path), path))
    before = await (await client.get("/metrics")).text()
    assert 'modelfleet_backend_healthy{backend="second"} 1.0' in before
    assert 'modelfleet_queue_depth{model="llama3.2:1b"} 0.0' in before

    raw["backends"] = raw["backends"][:1]
    path.write_text(yaml.safe_dump(raw))
    assert (await client.post("/admin/reload", headers=admin(client))).status == 200
    after = await (await client.get("/metrics")).text()
    assert 'modelfleet_backend_healthy{backend="first"} 1.0' in after
    assert 'modelfleet_backend_healthy{backend="second"}' not in after
    assert 'modelfleet_queue_depth{model="llama3.2:1b"}' not in after


async def test_admin_state_never_shows_a_password_in_a_backend_url(ollama, make_router):
    """A backend behind basic auth is configured as http://user:password@host (aiohttp sends
    it as the Authorization header): /admin/state, which the dashboard shows, keeps the
    host and drops the credentials."""
    server = ollama(models=[MODEL])
    secret = "b4sic-p4ss-91c2"
    url = server.url.replace("http://", f"http://ops:{secret}@")
    client = await make_router([{"name": "o", "url": url}])
    text = await (await client.get("/admin/state", headers=admin(client))).text()
    assert secret not in text
    shown = (await (await client.get("/admin/state", headers=admin(client))).json())["backends"]
    assert shown[0]["url"] == server.url


def test_a_backend_url_without_a_scheme_is_told_the_pattern_it_must_match(tmp_path: Path):
    """docs/router.md's own example: the pattern is the schema's, not the operator's value
    (which stays hidden: it may carry credentials)."""
    path = tmp_path / "router.yaml"
    path.write_text("backends:\n  - name: a\n    url: ftp://ops:pw-91c2@x\n")
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("an ftp:// backend URL was accepted")
    assert message == f"{path}: backends.0.url: String should match pattern '^https?://'"
    assert "pw-91c2" not in message
