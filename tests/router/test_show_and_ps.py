"""``/api/show`` and ``/api/ps`` for llama-server models: from what the backend reports.

The backend here is a small aiohttp server answering llama-server's ``/props`` and
``/v1/models`` with the fields a real one sends (shapes taken from the cached llama-server
build; tests/real checks the real thing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.router.conftest import router_of, wait_for


def llama_server_app(props: dict[str, Any], meta: dict[str, Any] | None) -> web.Application:
    async def v1_models(request: web.Request) -> web.Response:
        item = {"id": "gemma", "object": "model", "owned_by": "llamacpp", "meta": meta}
        return web.json_response({"object": "list", "data": [item]})

    async def get_props(request: web.Request) -> web.Response:
        return web.json_response(props)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/v1/models", v1_models)
    app.router.add_get("/props", get_props)
    app.router.add_get("/health", health)
    return app


PROPS = {
    "default_generation_settings": {"n_ctx": 8192},
    "modalities": {"vision": True, "audio": False},
    "chat_template": "{% if tools %}...{% endif %}",
    "chat_template_caps": {"supports_tools": True},
}
META = {"n_ctx": 8192, "n_ctx_train": 32768, "n_params": 268098176, "n_embd": 640}


async def _router(aiohttp_server, make_router, props, meta, **entry):
    server = await aiohttp_server(llama_server_app(props, meta))
    url = str(server.make_url("")).rstrip("/")
    model = {"name": "gemma", **entry}
    client = await make_router(
        [{"name": "ls", "url": url, "kind": "llama-server", "models": [model]}]
    )
    await wait_for(
        lambda: router_of(client).fleet.backends["ls"].models["gemma"].status == "loaded"
    )
    return client


async def test_show_reports_context_and_capabilities_from_props(aiohttp_server, make_router):
    client = await _router(aiohttp_server, make_router, PROPS, META, ctx=2048)
    resp = await client.post("/api/show", json={"model": "gemma"})
    assert resp.status == 200 and resp.headers["X-Modelfleet-Backend"] == "ls"
    show = await resp.json()
    assert show["capabilities"] == ["completion", "tools", "vision"]
    arch = show["model_info"]["general.architecture"]
    assert show["model_info"][f"{arch}.context_length"] == 8192  # the backend's, not the catalog's
    assert show["model_info"]["general.parameter_count"] == 268098176
    assert show["parameters"] == "num_ctx 8192"


async def test_show_without_tool_support_and_catalog_fallback(aiohttp_server, make_router):
    props = {"chat_template": "gemma", "chat_template_caps": {"supports_tools": False}}
    client = await _router(aiohttp_server, make_router, props, {"n_vocab": 5}, ctx=2048)
    show = await (await client.post("/api/show", json={"model": "gemma"})).json()
    assert show["capabilities"] == ["completion"]
    arch = show["model_info"]["general.architecture"]
    assert show["model_info"][f"{arch}.context_length"] == 2048  # no n_ctx anywhere: catalog


async def test_ps_has_context_length_and_an_expiry(aiohttp_server, make_router):
    client = await _router(aiohttp_server, make_router, PROPS, META)
    entry = (await (await client.get("/api/ps")).json())["models"][0]
    assert entry["context_length"] == 8192  # from /v1/models meta
    expires = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00"))
    assert expires.year > 2200  # llama-server has no idle unload: Ollama's "forever"
    assert expires > datetime.now(UTC)
