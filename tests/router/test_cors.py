"""CORS: Ollama's default origins, configurable, preflights answered, admin API never."""

from __future__ import annotations

import pytest

from modelfleet.router.cors import OLLAMA_DEFAULT_ORIGINS, compile_origins
from tests.router.conftest import ADMIN_TOKEN, ndjson

MODEL = "qwen2.5:0.5b"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost", True),
        ("http://localhost:3000", True),
        ("https://127.0.0.1:8443", True),
        ("http://0.0.0.0:8080", True),
        ("app://obsidian.md", True),
        ("file://", True),
        ("tauri://localhost", True),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("http://127.0.0.1.nip.io", False),
        ("vscode-webview://abc", False),
        ("null", False),
    ],
)
def test_default_origins_are_ollamas(origin, allowed):
    assert bool(compile_origins(OLLAMA_DEFAULT_ORIGINS).fullmatch(origin)) is allowed


async def test_preflight_and_streamed_answer_carry_the_headers(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], api_keys=["k"])
    origin = "http://localhost:5173"
    preflight = await client.options(
        "/api/chat",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )  # no key: browsers send none on a preflight
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Origin": origin, "Authorization": "Bearer k"}
    resp = await client.post("/api/chat", json=body, headers=headers)
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert "X-Modelfleet-Backend" in resp.headers["Access-Control-Expose-Headers"]
    assert "Origin" in resp.headers["Vary"]
    assert (await ndjson(resp))[-1]["done"] is True
    # an error answer is readable by the page too
    denied = await client.get("/api/tags", headers={"Origin": origin})
    assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == origin


async def test_other_origins_get_403_and_no_headers(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    resp = await client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "not allowed" in (await resp.json())["error"]["message"]
    preflight = await client.options(
        "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    # no Origin (curl, SDKs): CORS does not apply
    assert (await client.get("/v1/models")).status == 200


async def test_configured_origins_replace_the_default(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router(
        [{"name": "o", "url": server.url}], cors_origins=["https://webui.example"]
    )
    ok = await client.get("/api/tags", headers={"Origin": "https://webui.example"})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://webui.example"
    gone = await client.get("/api/tags", headers={"Origin": "http://localhost:3000"})
    assert gone.status == 403


async def test_admin_api_never_gets_cors(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], cors_origins=["*"])
    origin = "http://localhost:3000"
    preflight = await client.options(
        "/admin/backends", headers={"Origin": origin, "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status == 403 and "Access-Control-Allow-Origin" not in preflight.headers
    resp = await client.get(
        "/admin/state", headers={"Origin": origin, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    page = await client.get("/dashboard", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in page.headers
