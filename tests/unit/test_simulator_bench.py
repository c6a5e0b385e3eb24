"""The benchmark harness pieces that decide numbers: the bench fleet and workload mapping,
profile summary, percentiles and the fast stand-in backend (loopback only)."""

from __future__ import annotations

from bench import floor_proxy
from bench.fast_backend import create_app
from bench.proxy_overhead import pct, summarize_profile
from bench.routing_quality import (
    AZURE_FAMILIES,
    CATALOG_GB,
    INSTANT,
    bench_router_config,
    fleet_factory,
)
from modelfleet.deploy.simulate import (
    Request,
    RouterPolicy,
    SimFleet,
    Simulator,
)


def test_azure_families_split_the_catalog():
    # every catalog model belongs to exactly one service's family, so the Azure workload
    # asks for the whole catalog and a code request never asks for a chat model
    families = list(AZURE_FAMILIES.values())
    listed = [m for family in families for m in family]
    assert sorted(listed) == sorted(name for name, _ in CATALOG_GB)


def test_bench_fleet_is_the_documented_six_hosts_and_32_models():
    fleet = SimFleet.from_router_config(bench_router_config())
    assert [b.vram_mb // 1024 for b in fleet.backends] == [80, 80, 48, 48, 24, 24]
    assert len(fleet.model_names()) == 32


def test_instant_hardware_reference_loads_and_decodes_in_no_time():
    # the "instant loads and decoding" reference: same fleet and rules, no time spent, so
    # every request, cold or not, has its first token the moment it arrives
    assert INSTANT.load_s(66 * 1024) == 0.0
    assert INSTANT.decode_s_per_token(66 * 1024) == 0.0
    big = ["gpt-oss-120b", "qwen2.5-72b", "llama3.3-70b"]  # two fit on an 80 GB host at most
    trace = [Request(t=float(i), model=big[i % 3], output_tokens=500) for i in range(9)]
    summary = Simulator(fleet_factory(hardware=INSTANT)(), RouterPolicy(), trace).run().summary()
    assert summary["ttft_p99_s"] == 0.0
    assert summary["load_seconds"] == 0.0
    assert summary["cold_loads"] >= 3  # each model loaded at least once


def test_profile_summary_groups_leaf_frames_by_area():
    collapsed = "\n".join(
        [
            "main (router/__main__.py:10);proxy (router/proxy.py:5);"
            "write (/usr/lib/python3.11/asyncio/selector_events.py:9) 30",
            "main (router/__main__.py:10);decide (router/policy.py:50) 10",
            "main (router/__main__.py:10);_request "
            "(/x/.venv/lib/python3.11/site-packages/aiohttp/client.py:1) 60",
        ]
    )
    summary = summarize_profile(collapsed)
    assert summary["samples"] == 100
    assert summary["self_by_area_pct"] == {
        "aiohttp client (upstream call)": 60.0,
        "asyncio event loop and sockets": 30.0,
        "router (this project)": 10.0,
    }
    assert ("proxy (router/proxy.py)", 30.0) in summary["router_inclusive_top"]


def test_nearest_rank_percentile():
    assert pct([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert pct([float(v) for v in range(1, 101)], 99) == 99.0


async def test_fast_backend_streams_the_chunks_it_promises(aiohttp_client):
    client = await aiohttp_client(create_app(chunks=5, chunk_interval_s=0))
    body = {"model": "bench-model", "messages": [], "stream": True}
    response = await client.post("/v1/chat/completions", json=body)
    lines = [line async for line in response.content if line.startswith(b"data: ")]
    assert sum(b'"content"' in line for line in lines) == 5
    assert lines[-1] == b"data: [DONE]\n"
    plain = await client.post("/v1/chat/completions", json={"model": "bench-model"})
    assert (await plain.json())["choices"][0]["message"]["content"]


async def test_floor_proxy_passes_answers_and_streams_through(aiohttp_client, aiohttp_server):
    backend = await aiohttp_server(create_app(chunks=5, chunk_interval_s=0))
    client = await aiohttp_client(floor_proxy.create_app(str(backend.make_url(""))))
    plain = await client.post("/v1/chat/completions", json={"model": "bench-model"})
    assert plain.status == 200
    assert (await plain.json())["choices"][0]["message"]["content"]
    body = {"model": "bench-model", "messages": [], "stream": True}
    streamed = await client.post("/v1/chat/completions", json=body)
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    lines = [line async for line in streamed.content if line.startswith(b"data: ")]
    assert sum(b'"content"' in line for line in lines) == 5
    assert lines[-1] == b"data: [DONE]\n"
