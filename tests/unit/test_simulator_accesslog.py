"""The real router writes an access log; the simulator replays it (loopback only)."""

from __future__ import annotations

import asyncio

from bench.fast_backend import create_app as create_backend
from modelfleet.deploy.simulate import RouterPolicy, SimFleet, Simulator, trace_from_access_log
from modelfleet.router.app import create_app as create_router
from modelfleet.router.config import BackendConfig, ModelEntry, RouterConfig


async def test_router_access_log_replays_in_the_simulator(tmp_path, aiohttp_server, aiohttp_client):
    backend = await aiohttp_server(create_backend(chunks=3, chunk_interval_s=0))
    log = tmp_path / "access.jsonl"
    config = RouterConfig(
        backends=[
            BackendConfig(
                name="b1",
                url=str(backend.make_url("")).rstrip("/"),
                kind="openai",
                vram_mb=8192,
                slots=4,
                models=[ModelEntry(name="bench-model", size_mb=1000)],
            )
        ],
        access_log=str(log),
    )
    client = await aiohttp_client(create_router(config))
    for _ in range(50):  # the first refresh marks the model resident
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    body = {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}
    for stream in (False, True, False):
        response = await client.post("/v1/chat/completions", json={**body, "stream": stream})
        assert response.status == 200
        await response.read()
    await client.close()

    trace = trace_from_access_log(log)
    assert [r.model for r in trace] == ["bench-model"] * 3
    assert trace[0].t == 0 and trace[0].t <= trace[1].t <= trace[2].t
    # the stand-in's usage; the router streams even the non-streaming request (3 chunks)
    assert trace[0].prompt_tokens == 8 and trace[0].output_tokens == 3

    # An "openai" backend serves what it lists: resident from the start, never loaded.
    result = Simulator(SimFleet.from_router_config(config), RouterPolicy(), trace).run()
    assert (result.loads, result.decisions) == (0, {"resident": 3})
    assert len(result.served) == 3
