"""Bounded per-model queue with deadline, late binding, retries and health."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp

from tests.router.conftest import router_of, sse, wait_for


def chat(model: str = "m", stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": stream}


def gen(model: str, prompt: str = "x") -> dict:
    return {"model": model, "prompt": prompt, "stream": False}


async def _busy(router, model: str, count: int = 1) -> None:
    await wait_for(
        lambda: (
            sum(
                s.models[model].in_flight
                for s in router.fleet.backends.values()
                if model in s.models
            )
            >= count
        )
    )


async def test_full_queue_answers_429_with_retry_after(ollama, make_router):
    server = ollama(models=["qwen2.5:0.5b"], tokens_per_s=20)
    client = await make_router(
        [{"name": "o", "url": server.url}],
        queue={"max_per_model": 1, "retry_after_s": 3},
    )
    router = router_of(client)
    running = asyncio.ensure_future(client.post("/api/generate", json=gen("qwen2.5:0.5b", "1")))
    await _busy(router, "qwen2.5:0.5b")
    queued = asyncio.ensure_future(client.post("/api/generate", json=gen("qwen2.5:0.5b", "2")))
    await wait_for(lambda: router.fleet.queued.get("qwen2.5:0.5b") == 1)
    refused = await client.post("/api/generate", json=gen("qwen2.5:0.5b", "3"))
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 3
    assert "queue" in (await refused.json())["error"]
    assert refused.headers["X-Modelfleet-Reason"] == "queue-full"
    first, second = await running, await queued
    assert first.status == second.status == 200
    # the queued request bound late, to the slot the first one freed
    assert second.headers["X-Modelfleet-Reason"] == "resident"
    assert int(second.headers["X-Modelfleet-Queue-Ms"]) > 0
    openai_refused = await client.post("/v1/chat/completions", json=chat("qwen2.5:0.5b"))
    assert openai_refused.status == 200  # nothing running any more


async def test_full_queue_status_can_be_503(ollama, make_router):
    server = ollama(models=["qwen2.5:0.5b"], tokens_per_s=20)
    client = await make_router(
        [{"name": "o", "url": server.url}], queue={"max_per_model": 0, "full_status": 503}
    )
    router = router_of(client)
    running = asyncio.ensure_future(client.post("/v1/chat/completions", json=chat("qwen2.5:0.5b")))
    await _busy(router, "qwen2.5:0.5b")
    refused = await client.post("/v1/chat/completions", json=chat("qwen2.5:0.5b"))
    assert refused.status == 503 and "Retry-After" in refused.headers
    body = await refused.json()
    assert body["error"]["type"] == "server_error" and "queue" in body["error"]["message"]
    assert (await running).status == 200


async def test_queue_deadline_gives_503(ollama, make_router):
    server = ollama(models=["qwen2.5:0.5b"], tokens_per_s=10)
    client = await make_router(
        [{"name": "o", "url": server.url}], queue={"deadline_s": 0.2, "max_per_model": 5}
    )
    router = router_of(client)
    running = asyncio.ensure_future(client.post("/api/generate", json=gen("qwen2.5:0.5b", "1")))
    await _busy(router, "qwen2.5:0.5b")
    late = await client.post("/api/generate", json=gen("qwen2.5:0.5b", "2"))
    assert late.status == 503 and "Retry-After" in late.headers
    assert "waited" in (await late.json())["error"]
    assert late.headers["X-Modelfleet-Reason"] == "queue-deadline"
    assert (await running).status == 200
    assert router.fleet.queued.get("qwen2.5:0.5b", 0) == 0


async def test_transport_failure_is_retried_elsewhere_before_the_first_byte(
    faulty_backend, make_router, tmp_path
):
    """A gateway's 502 page is a transport failure: retried, counted against the backend."""
    bad, good = await faulty_backend("502"), await faulty_backend("ok")
    client = await make_router(
        [
            {"name": "bad", "url": bad.url, "kind": "openai"},
            {"name": "good", "url": good.url, "kind": "openai"},
        ],
        health={"interval_s": 30.0, "fail_threshold": 1},  # passive signals only
        access_log=str(tmp_path / "access.jsonl"),
    )
    router = router_of(client)  # both idle: "bad" wins the tie on name, then fails
    replies = []
    for _ in range(6):
        resp = await client.post("/v1/chat/completions", json=chat(stream=True))
        replies.append(resp)
        assert resp.status == 200
        assert resp.headers["X-Modelfleet-Backend"] == "good"
        assert (await sse(resp))[-1] == "[DONE]"
    assert bad.requests == 1  # fail_threshold 1: ejected after its first transport failure
    assert router.fleet.backends["bad"].healthy is False
    assert any(r.headers["X-Modelfleet-Attempts"] == "2" for r in replies)
    metrics = await (await client.get("/metrics")).text()
    assert 'modelfleet_backend_failures_total{backend="bad",kind="gateway"}' in metrics
    assert 'modelfleet_retries_total{backend="bad",model="m"} 1.0' in metrics
    records = [json.loads(line) for line in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert records[0]["attempts"] == 2 and records[0]["error"] is None
    assert all(r["backend"] == "good" and r["status"] == 200 for r in records)


async def test_backend_that_500s_on_everything_is_ejected_though_its_probe_answers(
    faulty_backend, make_router, monkeypatch
):
    """Issue 9, case 1 (other side): answered 5xx on many different requests eject it, and
    after that it gets under 5 % of the traffic. Its probe answers 200 throughout."""
    from modelfleet.router import health

    bad = await faulty_backend("500")
    good = await faulty_backend("ok", delay_s=0.02)  # slow enough that both get traffic
    client = await make_router(
        [
            {"name": "bad", "url": bad.url, "kind": "openai"},
            {"name": "good", "url": good.url, "kind": "openai"},
        ],
        health={"interval_s": 30.0, "fail_threshold": 100},  # only the error-rate rule
    )
    router = router_of(client)
    answered_at_detection: list[int] = []
    bad_at_detection: list[int] = []
    statuses: list[int] = []
    eject = health.eject

    def spy(router_: object, state: object, reason: str) -> None:
        answered_at_detection.append(len(statuses))
        bad_at_detection.append(bad.requests)
        eject(router_, state, reason)  # type: ignore[arg-type]

    monkeypatch.setattr(health, "eject", spy)

    async def worker(n: int) -> None:
        for i in range(40):
            body = chat()
            body["messages"][0]["content"] = f"worker {n} request {i}"  # all different
            resp = await client.post("/v1/chat/completions", json=body)
            statuses.append(resp.status)
            if resp.status != 200:  # the backend's own message, in the OpenAI shape
                assert resp.status == 500
                assert (await resp.json())["error"]["message"] == "boom"
                assert resp.headers["X-Modelfleet-Reason"] == "backend-error"

    await asyncio.gather(*(worker(n) for n in range(4)))
    assert bad_at_detection, "the backend that fails everything was never ejected"
    state = router.fleet.backends["bad"]
    assert not state.healthy and "error rate" in (state.last_error or "")
    sent_after = len(statuses) - answered_at_detection[0]
    share_after = (bad.requests - bad_at_detection[0]) / sent_after
    assert share_after < 0.05, share_after
    assert statuses.count(500) == bad.requests  # every failure answered, none lost


async def test_connection_refused_is_retried(faulty_backend, make_router):
    good = await faulty_backend("ok")
    client = await make_router(
        [
            {
                "name": "gone",
                "url": "http://127.0.0.1:9",
                "kind": "openai",
                "models": [{"name": "m"}],
            },
            {"name": "good", "url": good.url, "kind": "openai"},
        ],
        health={"interval_s": 30.0},
    )
    router = router_of(client)
    for _ in range(3):
        resp = await client.post("/v1/chat/completions", json=chat())
        assert resp.status == 200 and resp.headers["X-Modelfleet-Backend"] == "good"
    assert router.fleet.backends["gone"].counters.get("connect", 0) >= 1


async def test_no_retry_after_the_first_byte(faulty_backend, make_router):
    stalling, good = await faulty_backend("stall"), await faulty_backend("ok")
    client = await make_router(
        [
            {"name": "stalling", "url": stalling.url, "kind": "openai"},
            {"name": "good", "url": good.url, "kind": "openai"},
        ],
        stall_timeout_s=0.3,
    )
    router = router_of(client)
    router.fleet.backends["good"].drained = True
    resp = await client.post("/v1/chat/completions", json=chat(stream=True))
    events = await sse(resp)
    assert events[0]["choices"][0]["delta"]["content"] == "hi"
    assert "error" in events[-1] and "stall" in events[-1]["error"]["message"]
    assert good.requests == 0 and stalling.requests == 1
    assert router.fleet.backends["stalling"].counters["stall"] == 1
    ollama_resp = await client.post("/api/chat", json=chat(stream=True))
    assert ollama_resp.status == 200
    lines = (await ollama_resp.text()).splitlines()
    assert '"error"' in lines[-1] and "stall" in lines[-1]
    # a non-streaming answer is put together before anything is sent: nothing reached the
    # client, so the stall is a failure before the first byte (here no other backend: 504)
    whole = await client.post("/api/chat", json=chat())
    assert whole.status == 504 and "stall" in (await whole.json())["error"]


async def test_client_disconnect_cancels_the_upstream_request(faulty_backend, make_router):
    hanging = await faulty_backend("hang")
    client = await make_router([{"name": "h", "url": hanging.url, "kind": "openai"}])
    router = router_of(client)
    with contextlib.suppress(TimeoutError):
        await client.post(
            "/v1/chat/completions", json=chat(), timeout=aiohttp.ClientTimeout(total=0.3)
        )
    await wait_for(lambda: hanging.cancelled == 1)
    await wait_for(lambda: router.fleet.backends["h"].in_flight() == 0)


async def test_active_health_checks_eject_and_restore(faulty_backend, make_router):
    backend = await faulty_backend("ok")
    client = await make_router(
        [{"name": "b", "url": backend.url, "kind": "openai"}],
        health={"interval_s": 0.05, "fail_threshold": 2, "success_threshold": 2},
    )
    router = router_of(client)
    assert (await client.get("/readyz")).status == 200
    backend.health_status = 500
    await wait_for(lambda: not router.fleet.backends["b"].healthy)
    assert router.fleet.backends["b"].consecutive_failures >= 2
    assert (await client.get("/readyz")).status == 503
    refused = await client.post("/v1/chat/completions", json=chat())
    assert refused.status == 503
    backend.health_status = 200
    await wait_for(lambda: router.fleet.backends["b"].healthy, timeout=15)
    assert (await client.post("/v1/chat/completions", json=chat())).status == 200


async def test_unhealthy_backend_is_probed_with_backoff(make_router):
    client = await make_router(
        [
            {
                "name": "gone",
                "url": "http://127.0.0.1:9",
                "kind": "openai",
                "models": [{"name": "m"}],
            }
        ],
        health={"interval_s": 0.05, "fail_threshold": 1, "max_backoff_s": 0.4},
    )
    state = router_of(client).fleet.backends["gone"]
    await wait_for(lambda: state.backoff_s >= 0.4)
    assert not state.healthy and state.backoff_s == 0.4


async def test_queued_request_binds_to_the_first_backend_that_frees_a_slot(ollama, make_router):
    slow = ollama(models=["qwen2.5:0.5b"], tokens_per_s=4)
    quick = ollama(models=["qwen2.5:0.5b"], tokens_per_s=40)
    client = await make_router(
        [{"name": "a-slow", "url": slow.url}, {"name": "b-quick", "url": quick.url}],
        policy={"scale_out": False},
    )
    router = router_of(client)
    auth = {"Authorization": "Bearer test-admin-token"}
    for name in ("a-slow", "b-quick"):
        await client.post(
            f"/admin/backends/{name}/load", json={"model": "qwen2.5:0.5b"}, headers=auth
        )
    first = asyncio.ensure_future(client.post("/api/generate", json=gen("qwen2.5:0.5b", "1")))
    await _busy(router, "qwen2.5:0.5b", 1)
    second = asyncio.ensure_future(client.post("/api/generate", json=gen("qwen2.5:0.5b", "2")))
    await _busy(router, "qwen2.5:0.5b", 2)
    third = await client.post("/api/generate", json=gen("qwen2.5:0.5b", "3"))
    replies = [await first, await second]
    assert {r.headers["X-Modelfleet-Backend"] for r in replies} == {"a-slow", "b-quick"}
    # it waited at the router, then took the slot the quick backend freed first
    assert third.headers["X-Modelfleet-Backend"] == "b-quick"
    assert third.headers["X-Modelfleet-Reason"] == "resident"
    assert int(third.headers["X-Modelfleet-Queue-Ms"]) > 0
    assert any(d.reason == "wait-slot" for d in router.fleet.decisions)


async def test_bookkeeping_returns_to_zero_after_a_burst_with_cancellations(ollama, make_router):
    a = ollama(models=["qwen2.5:0.5b", "llama3.2:1b"], tokens_per_s=100, num_parallel=2)
    b = ollama(models=["qwen2.5:0.5b", "llama3.2:1b"], tokens_per_s=100, num_parallel=2)
    client = await make_router(
        [{"name": "a", "url": a.url, "slots": 2}, {"name": "b", "url": b.url, "slots": 2}],
        queue={"max_per_model": 100},
    )
    router = router_of(client)

    async def one(i: int) -> int:
        model = ("qwen2.5:0.5b", "llama3.2:1b")[i % 2]
        timeout = aiohttp.ClientTimeout(total=0.05 if i % 5 == 0 else 60)
        try:
            resp = await client.post("/api/generate", json=gen(model, str(i)), timeout=timeout)
            await resp.read()
            return resp.status
        except TimeoutError:
            return 499

    statuses = await asyncio.gather(*(one(i) for i in range(30)))
    assert set(statuses) <= {200, 499} and statuses.count(200) >= 24
    await wait_for(
        lambda: (
            all(s.in_flight() == 0 for s in router.fleet.backends.values())
            and not router.fleet.queued
        )
    )
    assert not router.scheduler.waiters and not router.scheduler.books.queues
    metrics = await (await client.get("/metrics")).text()
    assert "modelfleet_in_flight" in metrics
    for line in metrics.splitlines():
        if line.startswith("modelfleet_in_flight{"):
            assert line.endswith(" 0.0"), line
