"""Admin API, auth, probes, metrics, access log, config reload, and bad input."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from aiohttp.test_utils import TestClient

from modelfleet.router.app import create_app
from modelfleet.router.config import load_config
from tests.router.conftest import ADMIN_TOKEN, admin, router_of, wait_for

MODEL = "qwen2.5:0.5b"


def gen(prompt: str = "x") -> dict:
    return {"model": MODEL, "prompt": prompt, "stream": False}


async def test_admin_needs_the_token(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    assert (await client.get("/admin/state")).status == 401
    wrong = await client.get("/admin/state", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert ADMIN_TOKEN not in await wrong.text()
    ok = await client.get("/admin/state", headers=admin(client))
    assert ok.status == 200
    state = await ok.json()
    assert state["backends"][0]["name"] == "o" and state["backends"][0]["healthy"] is True
    assert ADMIN_TOKEN not in json.dumps(state)


async def test_admin_is_off_without_a_token(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], admin_token=None)
    resp = await client.get("/admin/state", headers={"Authorization": "Bearer x"})
    assert resp.status == 403 and "admin_token" in (await resp.json())["error"]


async def test_drain_and_undrain(ollama, make_router):
    a, b = ollama(models=[MODEL]), ollama(models=[MODEL])
    client = await make_router([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}])
    first = await client.post("/api/generate", json=gen())
    home = first.headers["X-Modelfleet-Backend"]
    other = "b" if home == "a" else "a"
    drained = await client.post(f"/admin/backends/{home}/drain", headers=admin(client))
    assert (await drained.json())["drained"] is True
    moved = await client.post("/api/generate", json=gen("y"))
    assert moved.headers["X-Modelfleet-Backend"] == other
    await client.post(f"/admin/backends/{home}/undrain", headers=admin(client))
    back = await client.post("/api/generate", json=gen("z"))
    assert back.headers["X-Modelfleet-Reason"] == "resident"
    missing = await client.post("/admin/backends/nope/drain", headers=admin(client))
    assert missing.status == 404 and "nope" in (await missing.json())["error"]


async def test_admin_load_and_unload(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    loaded = await client.post(
        "/admin/backends/o/load", json={"model": MODEL}, headers=admin(client)
    )
    assert loaded.status == 200 and (await loaded.json())["status"] == "loaded"
    ps = await (await client.get("/api/ps")).json()
    assert [m["backend"] for m in ps["models"]] == ["o"]
    resp = await client.post("/api/generate", json=gen())
    assert resp.headers["X-Modelfleet-Reason"] == "resident"
    metrics = await (await client.get("/metrics", headers=admin(client))).text()
    assert f'modelfleet_loads_total{{backend="o",model="{MODEL}",reason="admin"}} 1.0' in metrics
    unloaded = await client.post(
        "/admin/backends/o/unload", json={"model": MODEL}, headers=admin(client)
    )
    assert (await unloaded.json())["status"] == "cold"
    assert (await (await client.get("/api/ps")).json())["models"] == []
    no_model = await client.post("/admin/backends/o/load", json={}, headers=admin(client))
    assert no_model.status == 400
    # loading what is loaded answers at once; a model the backend does not serve is a 404
    # that names the backend, the model and what it does serve
    await client.post("/admin/backends/o/load", json={"model": MODEL}, headers=admin(client))
    again = await client.post(
        "/admin/backends/o/load", json={"model": MODEL}, headers=admin(client)
    )
    assert again.status == 200 and (await again.json())["status"] == "loaded"
    assert server.app.scheduler.load_counts[MODEL] == 2  # the first load and the reload only
    unknown = await client.post(
        "/admin/backends/o/load", json={"model": "x:1b"}, headers=admin(client)
    )
    assert unknown.status == 404
    assert (await unknown.json())["error"] == (
        f"backend 'o' does not serve model 'x:1b' (it serves: {MODEL})"
    )


async def test_reload_keeps_requests_in_flight(ollama, aiohttp_client, tmp_path):
    slow, extra = ollama(models=[MODEL], tokens_per_s=20), ollama(models=[MODEL])
    path = tmp_path / "router.yaml"
    raw = {
        "listen": "127.0.0.1:0",
        "admin_token": ADMIN_TOKEN,
        "backends": [{"name": "slow", "url": slow.url}],
    }
    path.write_text(yaml.safe_dump(raw))
    app = create_app(load_config(path), path)
    client: TestClient = await aiohttp_client(app)
    router = router_of(client)
    running = asyncio.ensure_future(client.post("/api/generate", json=gen()))
    await wait_for(lambda: router.fleet.backends["slow"].in_flight() == 1)
    raw["backends"] = [{"name": "extra", "url": extra.url}]
    path.write_text(yaml.safe_dump(raw))
    reloaded = await client.post("/admin/reload", headers=admin(client))
    assert (await reloaded.json())["backends"] == ["extra"]
    assert router.fleet.backends["slow"].removing  # kept until its request is done
    done = await running
    assert done.status == 200 and (await done.json())["done"] is True
    await wait_for(lambda: "slow" not in router.fleet.backends)
    after = await client.post("/api/generate", json=gen("y"))
    assert after.headers["X-Modelfleet-Backend"] == "extra"
    path.write_text("backends: [")
    broken = await client.post("/admin/reload", headers=admin(client))
    assert broken.status == 400 and str(path) in (await broken.json())["error"]


async def test_a_reload_that_cannot_be_applied_changes_nothing(ollama, aiohttp_client, tmp_path):
    # an access log in a directory that does not exist, or a keys file that cannot be read:
    # refused with the key and the path, and the router keeps its backends, keys and log
    first, second = ollama(models=[MODEL]), ollama(models=[MODEL])
    path, log = tmp_path / "router.yaml", tmp_path / "access.jsonl"
    raw = {
        "listen": "127.0.0.1:0",
        "admin_token": ADMIN_TOKEN,
        "access_log": str(log),
        "backends": [{"name": "first", "url": first.url}],
    }
    path.write_text(yaml.safe_dump(raw))
    client: TestClient = await aiohttp_client(create_app(load_config(path), path))
    router = router_of(client)
    missing = tmp_path / "no-such-dir" / "access.jsonl"
    for change in ({"access_log": str(missing)}, {"api_keys_file": str(tmp_path / "no-keys")}):
        path.write_text(
            yaml.safe_dump(raw | change | {"backends": [{"name": "second", "url": second.url}]})
        )
        refused = await client.post("/admin/reload", headers=admin(client))
        error = (await refused.json())["error"]
        assert refused.status == 400, error
        assert next(iter(change)) in error and next(iter(change.values())) in error
        assert list(router.fleet.backends) == ["first"] and router.client_keys == []
    assert (await client.post("/api/generate", json=gen())).status == 200
    await wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 1)


def test_a_router_that_cannot_open_its_access_log_says_so(tmp_path):
    from click.testing import CliRunner

    from modelfleet.router.__main__ import main

    config = tmp_path / "router.yaml"
    missing = tmp_path / "no-such-dir" / "access.jsonl"
    config.write_text(yaml.safe_dump({
        "listen": "127.0.0.1:0",
        "access_log": str(missing),
        "backends": [{"name": "o", "url": "http://127.0.0.1:9"}],
    }))  # fmt: skip
    result = CliRunner().invoke(main, ["--config", str(config)])
    assert result.exit_code == 2
    assert f"access_log: cannot append to {missing}: No such file or directory" in result.output
    assert "Traceback" not in result.output


async def test_probes_and_metrics(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    assert (await (await client.get("/readyz")).json())["backends"] == ["o"]
    await client.post("/api/generate", json=gen())
    await client.post(
        "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    text = await (await client.get("/metrics")).text()
    assert (
        'modelfleet_requests_total{api="ollama",backend="o",model="qwen2.5:0.5b",status="200"} 2.0'
        in text
    )
    assert 'modelfleet_loads_total{backend="o",model="qwen2.5:0.5b",reason="load-fits"} 1.0' in text
    assert (
        'modelfleet_routing_decisions_total{backend="o",model="qwen2.5:0.5b",reason="resident"}'
        in text
    )
    assert "modelfleet_time_to_first_token_seconds_bucket" in text
    assert 'modelfleet_queue_depth{model="qwen2.5:0.5b"} 0.0' in text
    assert 'modelfleet_backend_healthy{backend="o"} 1.0' in text


async def test_queue_depth_is_one_series_per_model_not_per_alias(ollama, make_router):
    """An alias shares its model's queue, so a series of its own would always read 0."""
    server = ollama(models=[MODEL])
    backend = {"name": "o", "url": server.url, "models": [{"name": MODEL, "aliases": ["q"]}]}
    client = await make_router([backend])
    text = await (await client.get("/metrics")).text()
    assert f'modelfleet_queue_depth{{model="{MODEL}"}} 0.0' in text
    assert 'modelfleet_queue_depth{model="q"}' not in text


async def test_api_keys_guard_every_client_path(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], api_keys=["k1", "k2"])
    for method, path in [
        ("GET", "/"),
        ("GET", "/api/tags"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
    ]:
        resp = await client.request(method, path)
        assert resp.status == 401, path
    refused = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert (await refused.json())["error"]["type"] == "authentication_error"
    key = {"Authorization": "Bearer k2"}
    assert (await client.get("/api/tags", headers=key)).status == 200
    assert (await client.post("/api/generate", json=gen(), headers=key)).status == 200
    assert (await client.get("/healthz")).status == 200  # probes stay open
    assert (await client.get("/metrics", headers=admin(client))).status == 200


async def test_access_log_lines(ollama, make_router, tmp_path):
    server = ollama(models=[MODEL])
    log = tmp_path / "access.jsonl"
    client = await make_router([{"name": "o", "url": server.url}], access_log=str(log))
    await client.post("/api/generate", json=gen())
    await client.post("/api/generate", json={"model": "nope"})
    stream = await client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    await stream.read()
    await wait_for(lambda: len(log.read_text().splitlines()) == 2)  # the 404 never routed
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    first, second = lines
    assert first["model"] == MODEL and first["backend"] == "o" and first["status"] == 200
    assert first["reason"] == "load-fits" and first["loaded"] is True
    assert first["completion_tokens"] > 0 and first["prompt_tokens"] > 0
    assert first["latency_s"] >= first["ttft_s"] > 0
    assert second["api"] == "openai" and second["stream"] is True
    assert second["reason"] == "resident"
    for key in ("ts", "request_id", "queue_s", "attempts", "error", "duration_s"):
        assert key in first


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/api/chat", "ollama"), ("/api/generate", "ollama"), ("/v1/chat/completions", "openai")],
)
async def test_bad_input_in_each_front_shape(ollama, make_router, path, shape):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}], max_body_mb=0.01)

    def message(body: dict) -> str:
        err = body["error"]
        if shape == "openai":
            assert isinstance(err, dict) and err["type"]
            return err["message"]
        assert isinstance(err, str)
        return err

    malformed = await client.post(
        path, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400 and "JSON" in message(await malformed.json())
    not_object = await client.post(path, json=[1, 2])
    assert not_object.status == 400
    missing = await client.post(path, json={"messages": []})
    assert missing.status == 400 and "model" in message(await missing.json())
    unknown = await client.post(path, json={"model": "nope:1b", "prompt": "x", "messages": []})
    assert unknown.status == 404 and "nope:1b" in message(await unknown.json())
    big = await client.post(path, json={"model": MODEL, "prompt": "x" * 50_000})
    assert big.status == 413 and "max_body_mb" in message(await big.json())
    for resp in (malformed, missing, unknown, big):
        assert "X-Modelfleet-Reason" in resp.headers


async def test_unknown_path_and_method_in_front_shape(ollama, make_router):
    server = ollama(models=[MODEL])
    client = await make_router([{"name": "o", "url": server.url}])
    resp = await client.get("/v1/nothing")
    assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found_error"
    resp = await client.get("/api/chat")
    assert resp.status == 405 and isinstance((await resp.json())["error"], str)
