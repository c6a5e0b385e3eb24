"""The benchmark harness pieces that decide numbers: online references, profile summary,
percentiles and the fast stand-in backend (loopback only)."""

from __future__ import annotations

from bench.fast_backend import create_app
from bench.proxy_overhead import pct, summarize_profile
from bench.routing_quality import (
    EvictionProbe,
    TrimmedEvictions,
    bench_router_config,
    pooled_online_loads,
)
from modelfleet.deploy.simulate import (
    HardwareModel,
    Request,
    SimBackend,
    SimFleet,
    SimModel,
    Simulator,
    belady_cold_loads,
)


def two_slot_fleet() -> SimFleet:
    catalog = {m: SimModel(m, 1024) for m in "abc"}
    return SimFleet([SimBackend("b1", "h1", 2048, 1, catalog)], HardwareModel())


def test_pooled_online_references_on_a_hand_checked_sequence():
    # Room for two models. a b c a b c: LRU misses every time (6); evicting by lowest decayed
    # demand keeps the two most requested so far.
    trace = [Request(float(i), m) for i, m in enumerate("abcabc")]
    loads = pooled_online_loads(trace, two_slot_fleet())
    assert loads["pooled_lru"] == 6
    assert belady_cold_loads(trace, two_slot_fleet())["pooled"] <= loads["pooled_demand"] <= 6


def test_trimmed_evictions_never_load_more_than_needed_here():
    # a, b fill the host; c needs one slot: a single victim is enough either way.
    trace = [Request(0.0, "a", 0, 1), Request(5.0, "b", 0, 1), Request(10.0, "c", 0, 1)]
    probe = EvictionProbe()
    Simulator(two_slot_fleet(), probe, trace).run()
    assert (probe.decisions, probe.victims, probe.not_needed) == (1, 1, 0)
    trimmed = Simulator(two_slot_fleet(), TrimmedEvictions(), trace).run()
    assert trimmed.loads == 3


def test_bench_fleet_is_the_documented_six_hosts_and_32_models():
    fleet = SimFleet.from_router_config(bench_router_config())
    assert [b.vram_mb // 1024 for b in fleet.backends] == [80, 80, 48, 48, 24, 24]
    assert len(fleet.model_names()) == 32


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
