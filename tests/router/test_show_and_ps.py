"""``/api/show`` and ``/api/ps`` for llama-server models: from what the backend reports.

The backend here is a small aiohttp server answering llama-server's ``/props`` and
``/v1/models`` with the fields a real one sends (shapes taken from the cached llama-server
build; tests/real checks the real thing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from modelfleet.router.backends import human_number, quantization_name
from tests.router.conftest import router_of, wait_for

ASKED_PROPS = web.AppKey("asked_props", list[str])


def llama_server_app(
    props: dict[str, Any], meta: dict[str, Any] | None, router_mode: bool = False
) -> web.Application:
    """One model, ``gemma``. ``router_mode``: llama-server's router, whose ``/models`` gives
    each model a status and whose ``/props?model=`` would start an unloaded one (``meta``
    None: unloaded). The ``/props`` calls are recorded under ``ASKED_PROPS``."""
    asked_props: list[str] = []

    async def models(request: web.Request) -> web.Response:
        item: dict[str, Any] = {"id": "gemma", "object": "model", "owned_by": "llamacpp"}
        if router_mode:
            item["status"] = {"value": "unloaded" if meta is None else "loaded"}
        if meta is not None or not router_mode:
            item["meta"] = meta
        return web.json_response({"object": "list", "data": [item]})

    async def get_props(request: web.Request) -> web.Response:
        asked_props.append(request.query.get("model", ""))
        return web.json_response(props)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    if router_mode:
        app.router.add_get("/models", models)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/props", get_props)
    app.router.add_get("/health", health)
    app[ASKED_PROPS] = asked_props
    return app


PROPS = {
    "default_generation_settings": {"n_ctx": 8192},
    "modalities": {"vision": True, "audio": False},
    "chat_template": "{% if tools %}...{% endif %}",
    "chat_template_caps": {"supports_tools": True},
}
META = {
    "n_ctx": 8192,
    "n_ctx_train": 32768,
    "n_params": 268098176,
    "n_embd": 640,
    "ftype": "Q4_K - Medium",
    "size": 246587904,
}
# what a real Ollama says of the same GGUF (gemma3:270m): details.parameter_size and
# details.quantization_level
OLLAMA_DETAILS = {"parameter_size": "268.10M", "quantization_level": "Q4_K_M"}


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
    assert show["details"] | OLLAMA_DETAILS == show["details"]
    assert show["details"]["family"] == ""  # llama.cpp does not say; never guessed
    tags = (await (await client.get("/api/tags")).json())["models"]
    assert tags[0]["details"] | OLLAMA_DETAILS == tags[0]["details"]
    assert tags[0]["size"] == 246587904  # the GGUF's tensors (meta.size), not the VRAM need


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
    assert entry["details"] | OLLAMA_DETAILS == entry["details"]
    expires = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00"))
    assert expires.year > 2200  # llama-server has no idle unload: Ollama's "forever"
    assert expires > datetime.now(UTC)


@pytest.mark.parametrize("loaded", [True, False])
async def test_show_in_router_mode(aiohttp_server, make_router, loaded):
    backend = llama_server_app(PROPS, META if loaded else None, router_mode=True)
    server = await aiohttp_server(backend)
    url = str(server.make_url("")).rstrip("/")
    model = {"name": "gemma", "ctx": 2048}
    client = await make_router(
        [{"name": "ls", "url": url, "kind": "llama-server", "models": [model]}]
    )
    state = router_of(client).fleet.backends["ls"]
    await wait_for(lambda: state.mode == "router" and "gemma" in state.models)
    show = await (await client.post("/api/show", json={"model": "gemma"})).json()
    arch = show["model_info"]["general.architecture"]
    if loaded:  # the backend's own n_ctx, parameter count and quantization
        assert backend[ASKED_PROPS] == ["gemma"]
        assert show["model_info"][f"{arch}.context_length"] == 8192
        assert show["model_info"]["general.parameter_count"] == 268098176
        assert show["capabilities"] == ["completion", "tools", "vision"]
        assert show["details"] | OLLAMA_DETAILS == show["details"]
    else:  # asking /props would load it: the catalog's ctx, nothing made up
        assert backend[ASKED_PROPS] == []
        assert show["model_info"] == {"general.architecture": arch, f"{arch}.context_length": 2048}
        assert show["details"]["parameter_size"] == show["details"]["quantization_level"] == ""


@pytest.mark.parametrize(
    ("count", "written"),
    [
        (268098176, "268.10M"),
        (8030261248, "8.0B"),
        (70_000_000_000, "70B"),
        (494_032_768, "494.03M"),
        (116829156672, "116.8B"),
        (1_000_000, "1M"),
        (1500, "2K"),
        (12, "12"),
    ],
)
def test_parameter_size_as_ollama_writes_it(count, written):
    assert human_number(count) == written


@pytest.mark.parametrize(
    ("ftype", "level"),
    [
        ("Q4_K - Medium", "Q4_K_M"),
        ("Q4_K - Small", "Q4_K_S"),
        ("Q3_K - Large", "Q3_K_L"),
        ("Q2_K - Medium", "Q2_K"),
        ("Q2_K - Small", "Q2_K_S"),
        ("Q8_0", "Q8_0"),
        ("F16", "F16"),
        ("all F32", "F32"),
        ("IQ2_XXS - 2.0625 bpw", "IQ2_XXS"),
        ("TQ1_0 - 1.69 bpw ternary", "TQ1_0"),
        ("MXFP4 MoE", "MXFP4"),
        ("Q4_1, some F16", "Q4_1"),
        ("Q6_K (guessed)", "Q6_K"),
    ],
)
def test_quantization_level_as_ollama_names_it(ftype, level):
    assert quantization_name(ftype) == level
