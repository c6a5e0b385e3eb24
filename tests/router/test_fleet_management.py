"""Model management with fleet semantics (admin token): delete where held, pull where placed."""

from __future__ import annotations

from tests.router.conftest import admin, ndjson, router_of, wait_for

MODEL = "qwen2.5:0.5b"
OTHER = "llama3.2:1b"


async def test_delete_goes_to_every_backend_holding_it_and_the_router_forgets(ollama, make_router):
    a, b, c = ollama(models=[MODEL]), ollama(models=[MODEL]), ollama(models=[OTHER])
    client = await make_router(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}, {"name": "c", "url": c.url}]
    )
    router = router_of(client)
    resp = await client.delete("/api/delete", json={"model": MODEL}, headers=admin(client))
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer == {"status": "success", "backends": ["a", "b"]}  # not c: it lacks it
    for name in ("a", "b"):
        assert MODEL not in router.fleet.backends[name].catalog()
    tags = await (await client.get("/api/tags")).json()
    assert [m["name"] for m in tags["models"]] == [OTHER]
    again = await client.delete("/api/delete", json={"model": MODEL}, headers=admin(client))
    assert again.status == 404
    assert "not found on any healthy Ollama backend" in (await again.json())["error"]


async def test_pull_goes_where_the_catalog_places_the_model(ollama, make_router):
    a, b = ollama(models=[]), ollama(models=[])
    client = await make_router(
        [
            {"name": "a", "url": a.url, "models": [{"name": OTHER}]},
            {"name": "b", "url": b.url},
        ]
    )
    router = router_of(client)
    lines = await ndjson(
        await client.post("/api/pull", json={"model": OTHER}, headers=admin(client))
    )
    assert {line.get("backend") for line in lines[:-1]} == {"a"}
    assert lines[-1] == {"status": "success", "backends": ["a"]}
    await router.refresh(router.fleet.backends["b"])
    assert OTHER not in router.fleet.backends["b"].learned
    # a model the catalog places nowhere: every healthy Ollama backend, as before
    lines = await ndjson(
        await client.post("/api/pull", json={"model": MODEL}, headers=admin(client))
    )
    assert {line.get("backend") for line in lines[:-1]} == {"a", "b"}


async def test_copy_of_a_model_no_backend_holds_is_404_and_needs_admin(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "a", "url": server.url}])
    body = {"source": "missing:1b", "destination": "x"}
    denied = await client.post("/api/copy", json=body)
    assert denied.status == 403
    resp = await client.post("/api/copy", json=body, headers=admin(client))
    assert resp.status == 404 and "'missing:1b'" in (await resp.json())["error"]
    await wait_for(lambda: MODEL in router_of(client).fleet.backends["a"].catalog())
