"""Residency-aware routing on real loads of the Ollama stand-in: joins, evictions, scale-out."""

from __future__ import annotations

import asyncio

from tests.router.conftest import router_of

CATALOG = [
    {"name": "hot:1b", "size_mb": 1500},
    {"name": "cold:1b", "size_mb": 1500},
    {"name": "new:1b", "size_mb": 1500},
]


def gen(model: str, prompt: str = "x") -> dict:
    return {"model": model, "prompt": prompt, "stream": False}


async def test_concurrent_cold_requests_share_one_load(ollama, make_router):
    a = ollama(models=["qwen2.5:7b"], num_parallel=4, load_ms_per_gb=300)
    b = ollama(models=["qwen2.5:7b"], num_parallel=4, load_ms_per_gb=300)
    client = await make_router(
        [
            {"name": "a", "url": a.url, "slots": 4},
            {"name": "b", "url": b.url, "slots": 4},
        ]
    )
    replies = await asyncio.gather(
        *(client.post("/api/generate", json=gen("qwen2.5:7b", str(i))) for i in range(4))
    )
    assert all(r.status == 200 for r in replies)
    backends = {r.headers["X-Modelfleet-Backend"] for r in replies}
    reasons = sorted(r.headers["X-Modelfleet-Reason"] for r in replies)
    assert len(backends) == 1
    assert reasons == ["join-load", "join-load", "join-load", "load-fits"]
    loads = a.app.scheduler.load_counts.get("qwen2.5:7b", 0)
    loads += b.app.scheduler.load_counts.get("qwen2.5:7b", 0)
    assert loads == 1


async def test_eviction_spares_the_model_in_demand(ollama, make_router):
    a = ollama(catalog=CATALOG, models=["hot:1b", "cold:1b", "new:1b"], vram_mb=2000)
    b = ollama(catalog=CATALOG, models=["hot:1b", "cold:1b", "new:1b"], vram_mb=2000)
    client = await make_router(
        [
            {"name": "a", "url": a.url, "vram_mb": 2000},
            {"name": "b", "url": b.url, "vram_mb": 2000},
        ]
    )
    first = await client.post("/api/generate", json=gen("hot:1b"))
    hot_on = first.headers["X-Modelfleet-Backend"]
    for i in range(4):
        again = await client.post("/api/generate", json=gen("hot:1b", str(i)))
        assert again.headers["X-Modelfleet-Reason"] == "resident"
    cold = await client.post("/api/generate", json=gen("cold:1b"))
    cold_on = cold.headers["X-Modelfleet-Backend"]
    assert cold_on != hot_on and cold.headers["X-Modelfleet-Reason"] == "load-fits"

    new = await client.post("/api/generate", json=gen("new:1b"))
    assert new.status == 200
    assert new.headers["X-Modelfleet-Reason"] == "load-evict"
    assert new.headers["X-Modelfleet-Backend"] == cold_on  # the hot model stays resident

    router = router_of(client)
    await router.refresh_all()
    assert router.fleet.backends[hot_on].models["hot:1b"].status == "loaded"
    assert router.fleet.backends[cold_on].models["cold:1b"].status == "cold"
    still_hot = await client.post("/api/generate", json=gen("hot:1b", "z"))
    assert still_hot.headers["X-Modelfleet-Backend"] == hot_on
    assert still_hot.headers["X-Modelfleet-Reason"] == "resident"
    state = await (await client.get("/admin/state", headers=_admin())).json()
    evicted = [d for d in state["decisions"] if d["reason"] == "load-evict"]
    assert evicted and evicted[0]["evict"] == [f"{cold_on}/cold:1b"]


async def test_backends_on_one_host_share_its_vram(ollama, make_router):
    h1a = ollama(catalog=CATALOG, models=["hot:1b", "new:1b"], vram_mb=2000)
    h1b = ollama(catalog=CATALOG, models=["hot:1b", "new:1b"], vram_mb=2000)
    h2 = ollama(catalog=CATALOG, models=["hot:1b", "new:1b"], vram_mb=2000)
    client = await make_router(
        [
            {"name": "h1-a", "url": h1a.url, "host": "h1", "vram_mb": 2000},
            {"name": "h1-b", "url": h1b.url, "host": "h1", "vram_mb": 2000},
            {"name": "h2", "url": h2.url, "host": "h2", "vram_mb": 2000},
        ]
    )
    router = router_of(client)
    await client.post("/admin/backends/h1-a/load", json={"model": "hot:1b"}, headers=_admin())
    assert router.fleet.backends["h1-a"].models["hot:1b"].status == "loaded"
    resp = await client.post("/api/generate", json=gen("new:1b"))
    # h1-b is empty but its host's VRAM is taken by h1-a's model: h2 is the place that fits
    assert resp.headers["X-Modelfleet-Backend"] == "h2"
    assert resp.headers["X-Modelfleet-Reason"] == "load-fits"


async def test_burst_for_a_cold_model_loads_it_once_and_evicts_nothing(ollama, make_router):
    # Both hosts hold a hot model and have room. Eight concurrent requests for a cold model:
    # one load, the rest join it or wait for its slots. No service time was observed yet, so
    # the default (5 s x 7 queued / 2 slots > the 1.5 s load) must not trigger a scale-out.
    hosts = {
        name: ollama(
            catalog=CATALOG,
            models=["hot:1b", "cold:1b"],
            vram_mb=8000,
            num_parallel=2,
            load_ms_per_gb=1000,
            tokens_per_s=1000,
        )
        for name in "ab"
    }
    client = await make_router(
        [{"name": n, "url": h.url, "vram_mb": 8000, "slots": 2} for n, h in hosts.items()]
    )
    router = router_of(client)
    for name in "ab":
        loaded = await client.post(
            f"/admin/backends/{name}/load", json={"model": "hot:1b"}, headers=_admin()
        )
        assert loaded.status == 200
    replies = await asyncio.gather(
        *(client.post("/api/generate", json=gen("cold:1b", str(i))) for i in range(8))
    )
    assert all(r.status == 200 for r in replies)
    assert sum(h.app.scheduler.load_counts.get("cold:1b", 0) for h in hosts.values()) == 1
    assert len({r.headers["X-Modelfleet-Backend"] for r in replies}) == 1
    assert not [d for d in router.fleet.decisions if d.evict or d.reason == "scale-out"]
    await router.refresh_all()
    for name in "ab":
        assert router.fleet.backends[name].models["hot:1b"].status == "loaded"


async def test_a_held_request_is_served_when_its_hold_runs_out(ollama, make_router):
    # a holds hot:1b (asked four times), b is busy with cold:1b for seconds. new:1b must evict
    # one of them: hot is idle but in demand, so the request is held (cold may free cheaper
    # room); after max_hold_s the router's own timer decides again and evicts hot.
    hosts = {
        name: ollama(catalog=CATALOG, models=["hot:1b", "cold:1b", "new:1b"], vram_mb=2000,
                     tokens_per_s=speed)
        for name, speed in (("a", 100), ("b", 4))  # b answers in 2-4 s
    }  # fmt: skip
    client = await make_router(
        [{"name": n, "url": h.url, "vram_mb": 2000} for n, h in hosts.items()],
        policy={"max_hold_s": 0.5},
    )
    router = router_of(client)
    for name, model in (("a", "hot:1b"), ("b", "cold:1b")):
        loaded = await client.post(
            f"/admin/backends/{name}/load", json={"model": model}, headers=_admin()
        )
        assert loaded.status == 200
    short = {"num_predict": 1}
    for i in range(4):
        await client.post("/api/generate", json=gen("hot:1b", str(i)) | {"options": short})
    busy = asyncio.ensure_future(client.post("/api/generate", json=gen("cold:1b", "a long one")))
    while not router.fleet.backends["b"].models["cold:1b"].in_flight:
        await asyncio.sleep(0.01)
    new = await client.post("/api/generate", json=gen("new:1b") | {"options": short})
    assert new.status == 200
    assert (new.headers["X-Modelfleet-Reason"], new.headers["X-Modelfleet-Backend"]) == (
        "load-evict",
        "a",
    )
    assert [d.backend for d in router.fleet.decisions if d.reason == "hold-evict"] == ["a"]
    assert not busy.done()  # nothing freed room meanwhile: the hold's timer woke it
    assert (await busy).status == 200


async def test_hot_model_scales_out_when_the_queue_would_outlast_a_load(ollama, make_router):
    a = ollama(models=["qwen2.5:0.5b"], tokens_per_s=40)
    b = ollama(models=["qwen2.5:0.5b"], tokens_per_s=40)
    client = await make_router(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
        policy={"default_load_s": 0.01},
    )
    router = router_of(client)
    # one request served first, so its service time is observed (never scale out on a guess)
    await client.post("/api/generate", json=gen("qwen2.5:0.5b", "0"))
    assert "qwen2.5:0.5b" in router.fleet.service_s
    router.fleet.service_s["qwen2.5:0.5b"] = 1.0  # as if requests held a slot for a second
    first = asyncio.ensure_future(client.post("/api/generate", json=gen("qwen2.5:0.5b", "1")))
    while not any(ms.in_flight for s in router.fleet.backends.values() for ms in s.models.values()):
        await asyncio.sleep(0.01)
    second = await client.post("/api/generate", json=gen("qwen2.5:0.5b", "2"))
    done = await first
    assert second.headers["X-Modelfleet-Reason"] == "scale-out"
    assert second.headers["X-Modelfleet-Backend"] != done.headers["X-Modelfleet-Backend"]


async def test_busy_model_waits_instead_of_scaling_when_a_load_costs_more(ollama, make_router):
    a = ollama(models=["qwen2.5:0.5b"], tokens_per_s=40)
    b = ollama(models=["qwen2.5:0.5b"], tokens_per_s=40)
    client = await make_router(
        [{"name": "a", "url": a.url}, {"name": "b", "url": b.url}],
        policy={"default_load_s": 60.0, "default_service_s": 0.1},
    )
    router = router_of(client)
    first = await client.post("/api/generate", json=gen("qwen2.5:0.5b", "0"))
    loaded_on = first.headers["X-Modelfleet-Backend"]
    router.fleet.load_s["qwen2.5:0.5b"] = 60.0  # as if loads had been slow
    replies = await asyncio.gather(
        *(client.post("/api/generate", json=gen("qwen2.5:0.5b", str(i))) for i in range(3))
    )
    assert {r.headers["X-Modelfleet-Backend"] for r in replies} == {loaded_on}
    assert all(r.headers["X-Modelfleet-Reason"] == "resident" for r in replies)
    waited = [d for d in router.fleet.decisions if d.reason == "wait-slot"]
    assert waited and all(d.backend == loaded_on for d in waited)


def _admin() -> dict[str, str]:
    from tests.router.conftest import ADMIN_TOKEN

    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
