"""The Ollama front API over Ollama stand-ins: passthrough, streaming, fleet-wide views."""

from __future__ import annotations

from typing import Any

import pytest

from tests.router.conftest import admin, ndjson, router_of, wait_for

MODEL = "qwen2.5:0.5b"


async def test_root_version_and_head(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o1", "url": server.url}])
    resp = await client.get("/")
    assert resp.status == 200 and await resp.text() == "Ollama is running"
    assert (await client.head("/")).status == 200
    version = await (await client.get("/api/version")).json()
    assert version["version"].count(".") == 2


async def test_chat_streams_ndjson_by_default(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o1", "url": server.url}])
    resp = await client.post(
        "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "hi there"}]}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    assert resp.headers["X-Modelfleet-Backend"] == "o1"
    assert resp.headers["X-Modelfleet-Reason"] == "load-fits"
    lines = await ndjson(resp)
    assert len(lines) > 1
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["load_duration"] > 0  # it was a cold load on the stand-in


async def test_second_request_goes_where_the_model_is_resident(ollama, make_router):
    a, b = ollama(models=[MODEL]), ollama(models=[MODEL])
    client = await make_router([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}])
    first = await client.post(
        "/api/generate", json={"model": MODEL, "prompt": "x", "stream": False}
    )
    assert first.status == 200
    loaded_on = first.headers["X-Modelfleet-Backend"]
    assert first.headers["X-Modelfleet-Reason"] == "load-fits"
    for _ in range(3):
        again = await client.post(
            "/api/generate", json={"model": MODEL, "prompt": "y", "stream": False}
        )
        assert again.headers["X-Modelfleet-Backend"] == loaded_on
        assert again.headers["X-Modelfleet-Reason"] == "resident"
        body = await again.json()
        assert body["done"] is True and body["load_duration"] < body["total_duration"]
    assert (
        a.app.scheduler.load_counts.get(MODEL, 0) + b.app.scheduler.load_counts.get(MODEL, 0) == 1
    )


async def test_ps_is_fleet_wide_and_names_the_backend(ollama, make_router):
    a, b = ollama(models=[MODEL, "llama3.2:1b"]), ollama(models=[MODEL, "llama3.2:1b"])
    client = await make_router(
        [
            {"name": "a", "url": a.url, "host": "h1"},
            {"name": "b", "url": b.url, "host": "h2"},
        ]
    )
    await client.post("/api/generate", json={"model": MODEL, "prompt": "x", "stream": False})
    await client.post(
        "/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "stream": False}
    )
    router = router_of(client)
    await router.refresh_all()
    ps = await (await client.get("/api/ps")).json()
    where = {(m["name"], m["backend"]) for m in ps["models"]}
    assert len(where) == 2
    for entry in ps["models"]:
        assert entry["size"] > 0 and entry["size_vram"] == entry["size"]
        assert entry["host"] in ("h1", "h2")
        assert entry["expires_at"].endswith("Z") or "+" in entry["expires_at"]


async def test_tags_merges_every_backend(ollama, make_router):
    with_kv = {"name": MODEL, "size_mb": 379, "family": "qwen2", "kv_mb_per_1k_ctx": 12}
    a, b = ollama(models=[MODEL], catalog=[with_kv]), ollama(models=["llama3.2:1b"])
    client = await make_router([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}])
    tags = await (await client.get("/api/tags")).json()
    by_name = {m["name"]: m for m in tags["models"]}
    assert by_name[MODEL]["backends"] == ["a"]
    assert by_name["llama3.2:1b"]["backends"] == ["b"]
    assert by_name[MODEL]["details"]["family"] == "qwen2"
    assert by_name[MODEL]["digest"]

    # loaded, the model takes more VRAM than its file (KV cache): /api/ps says the one and
    # /api/tags still the other, as Ollama does
    await client.post("/api/generate", json={"model": MODEL, "prompt": "", "stream": False})
    await router_of(client).refresh_all()
    tags = await (await client.get("/api/tags")).json()
    ps = await (await client.get("/api/ps")).json()
    assert {m["name"]: m["size"] for m in tags["models"]}[MODEL] == 379 * 1024 * 1024
    assert {m["name"]: m["size"] for m in ps["models"]}[MODEL] > 379 * 1024 * 1024


async def test_show_forwards_to_a_backend_with_the_model(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o1", "url": server.url}])
    resp = await client.post("/api/show", json={"model": MODEL})
    assert resp.status == 200
    body = await resp.json()
    assert body["details"]["family"] == "qwen2"
    assert resp.headers["X-Modelfleet-Backend"] == "o1"


async def test_embed_and_legacy_embeddings(ollama, make_router):
    embed_model = "nomic-embed-text:latest"
    server = ollama(models=[embed_model])
    client = await make_router([{"name": "o1", "url": server.url}])
    resp = await client.post("/api/embed", json={"model": "nomic-embed-text", "input": ["a", "b"]})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert len(body["embeddings"]) == 2 and len(body["embeddings"][0]) == 768
    legacy = await client.post("/api/embeddings", json={"model": embed_model, "prompt": "a"})
    assert len((await legacy.json())["embedding"]) == 768


@pytest.mark.parametrize("kind", ["ollama", "llama-swap"])
async def test_embed_with_no_input_loads_the_model_on_every_kind(
    ollama, llama_swap, make_router, kind
):
    # Ollama loads the model and answers no vectors; the router does so on every kind (a
    # llama-swap backend was sent {"input": null} and answered 400 or worse)
    if kind == "ollama":
        model, server = "nomic-embed-text:latest", ollama(models=["nomic-embed-text:latest"])
        backend = {"name": "b", "url": server.url}
    else:
        model = "emb"
        server = llama_swap({"models": {model: {"cmd": "llama-server -m e.gguf --port ${PORT}"}}})
        backend = {"name": "b", "url": server.url, "kind": "llama-swap"}
    client = await make_router([backend])
    router = router_of(client)
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("/api/embed", {}, {"model": model, "embeddings": []}),
        ("/api/embed", {"input": None}, {"model": model, "embeddings": []}),
        ("/api/embed", {"input": ""}, {"model": model, "embeddings": []}),
        ("/api/embeddings", {"prompt": ""}, {"embedding": []}),
    ]
    for path, body, answer in cases:
        resp = await client.post(path, json={"model": model, **body})
        assert resp.status == 200, await resp.text()
        assert await resp.json() == answer
        assert resp.headers["X-Modelfleet-Backend"] == "b"
        assert router.fleet.backends["b"].models[model].status == "loaded"
        unload = {"model": model, "keep_alive": 0}
        resp = await client.post(path, json=unload, headers=admin(client))
        assert resp.status == 200 and await resp.json() == answer
        assert resp.headers["X-Modelfleet-Reason"] == "unload"
        assert router.fleet.backends["b"].models[model].status == "cold"


async def test_admin_loads_an_embedding_model_on_ollama(ollama, make_router):
    # Ollama will not load an embedding model through /api/generate ("does not support
    # generate"); the router's load falls back to /api/embed with no input
    embed_model = "nomic-embed-text:latest"
    server = ollama(models=[embed_model])
    client = await make_router([{"name": "o1", "url": server.url}])
    load = {"model": embed_model}
    resp = await client.post("/admin/backends/o1/load", json=load, headers=admin(client))
    assert resp.status == 200, await resp.text()
    await router_of(client).refresh_all()
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == [embed_model]


async def test_pull_to_one_backend_and_to_all_streams_progress(ollama, make_router):
    a, b = ollama(models=[]), ollama(models=[])
    client = await make_router([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}])
    resp = await client.post(
        "/api/pull", json={"model": MODEL, "backend": "a"}, headers=admin(client)
    )
    lines = await ndjson(resp)
    assert {line.get("backend") for line in lines[:-1]} == {"a"}
    assert any(line.get("status", "").startswith("pulling") for line in lines)
    assert lines[-1] == {"status": "success", "backends": ["a"]}
    router = router_of(client)
    await wait_for(lambda: MODEL in router.fleet.backends["a"].catalog())
    assert MODEL not in router.fleet.backends["b"].catalog()

    resp = await client.post("/api/pull", json={"model": "llama3.2:1b"}, headers=admin(client))
    lines = await ndjson(resp)
    assert {line.get("backend") for line in lines[:-1]} == {"a", "b"}
    assert lines[-1]["status"] == "success"


async def test_pull_of_unknown_model_reports_the_backend_error(ollama, make_router):
    server = ollama(models=[])
    client = await make_router([{"name": "a", "url": server.url}])
    pull = await client.post("/api/pull", json={"model": "nope:1b"}, headers=admin(client))
    lines = await ndjson(pull)
    assert "error" in lines[-1] and "a" in lines[-1]["error"]


async def test_load_and_unload_with_empty_prompt(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o1", "url": server.url}])
    resp = await client.post("/api/generate", json={"model": MODEL})
    body = await resp.json()
    assert body["done_reason"] == "load"
    router = router_of(client)
    assert router.fleet.backends["o1"].models[MODEL].status == "loaded"
    unload = {"model": MODEL, "messages": [], "keep_alive": 0}
    resp = await client.post("/api/chat", json=unload, headers=admin(client))
    body = await resp.json()
    assert body["done_reason"] == "unload"
    await router.refresh_all()
    assert router.fleet.backends["o1"].models[MODEL].status == "cold"
    ps = await (await client.get("/api/ps")).json()
    assert ps["models"] == []


async def test_catalog_names_map_to_backend_names_both_ways(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router(
        [{"name": "o1", "url": server.url, "models": [{"name": "fast", "backend_model": MODEL}]}]
    )
    resp = await client.post(
        "/api/chat", json={"model": "fast", "messages": [{"role": "user", "content": "x"}]}
    )
    lines = await ndjson(resp)
    assert {line["model"] for line in lines} == {"fast"}
    stream = await client.post(
        "/v1/chat/completions",
        json={"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    text = await stream.text()
    assert '"model":"fast"' in text and MODEL not in text
    whole = await client.post(
        "/api/generate", json={"model": "fast", "prompt": "x", "stream": False}
    )
    assert (await whole.json())["model"] == "fast"
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["fast"]


async def test_an_alias_is_its_model_not_another_one(ollama, make_router):
    """``tiny`` is another name of ``fast``: asking for it finds ``fast`` resident (no load,
    no eviction of the model itself, one line in /api/ps) and the answer says ``tiny``."""
    server = ollama(models=[MODEL])
    entry = {"name": "fast", "backend_model": MODEL, "aliases": ["tiny"]}
    client = await make_router(
        [{"name": "o1", "url": server.url, "max_loaded": 1, "models": [entry]}]
    )
    chat = {"messages": [{"role": "user", "content": "x"}], "stream": False}
    first = await client.post("/v1/chat/completions", json={"model": "fast", **chat})
    assert first.headers["X-Modelfleet-Reason"] == "load-fits"
    for _ in range(2):
        resp = await client.post("/v1/chat/completions", json={"model": "tiny", **chat})
        assert resp.status == 200 and resp.headers["X-Modelfleet-Reason"] == "resident"
        assert (await resp.json())["model"] == "tiny"
    await router_of(client).refresh_all()
    ps = await (await client.get("/api/ps")).json()
    assert [m["name"] for m in ps["models"]] == ["fast"]
    listed = {m["id"]: m for m in (await (await client.get("/v1/models")).json())["data"]}
    assert listed["tiny"]["loaded_on"] == listed["fast"]["loaded_on"] == ["o1"]
    tags = {m["name"]: m for m in (await (await client.get("/api/tags")).json())["models"]}
    assert tags["tiny"]["size"] == tags["fast"]["size"] > 0
    assert tags["tiny"]["details"] == tags["fast"]["details"]
