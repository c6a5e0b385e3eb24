"""Router replicas sharing soft state through a real redis-server (router/shared.py).

Two router apps run in this process over Ollama stand-ins, both pointed at one
redis-server on 127.0.0.1:<free port> (password, no persistence) that the tests stop and
start. Nothing is timed: conditions are awaited with generous bounds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from modelfleet.router.app import create_app
from modelfleet.router.config import ConfigError, load_config
from tests.router.conftest import ADMIN_TOKEN, router_config, router_of, shared_of, wait_for

PASSWORD = "s3cret-redis-pw-7f1c"
CATALOG = [
    {"name": "hot:1b", "size_mb": 1500},
    {"name": "cold:1b", "size_mb": 1500},
]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on loopback that a test can kill and start again (same port)."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.tmp = tmp
        self.password_file = tmp / "redis.secret"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, decode_responses=True)

    def start(self) -> None:
        # the password goes in a 0600 config file, not on a command line others can read
        conf = self.tmp / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            f"bind 127.0.0.1\nport {self.port}\nsave ''\nappendonly no\n"
            f"requirepass {PASSWORD}\ndir {self.tmp}\n"
        )
        self.proc = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (deploy/setup.sh --all installs it)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.fixture
def standins(ollama: Any) -> dict[str, Any]:
    """Two Ollama stand-ins with room for one of the two models each, both holding hot:1b."""
    return {
        name: ollama(
            catalog=CATALOG,
            models=["hot:1b", "cold:1b"],
            vram_mb=2000,
            num_parallel=4,
            load_ms_per_gb=600,
            tokens_per_s=2000,
        )
        for name in "ab"
    }


def _backends(standins: dict[str, Any], prefer: str) -> list[dict[str, Any]]:
    """The preferred backend is declared with a little more VRAM: two replicas that prefer
    different backends place a cold load differently, as replicas whose views differ (their
    own in-flight counts, demand) do in real life. ``ghost:1b`` is in the router's catalog
    but on no stand-in: loading it fails at the backend."""
    ghost = [{"name": "ghost:1b", "size_mb": 100}]
    return [
        {"name": n, "url": s.url, "vram_mb": 2000 if n == prefer else 1900, "slots": 4}
        | {"models": ghost}
        for n, s in standins.items()
    ]


@pytest.fixture
async def replicas(aiohttp_client: Any, standins: dict[str, Any], redis_server: RedisServer):
    """``make(name, prefer="a", **shared_state)``: a router replica on the test's Redis."""

    async def make(name: str, prefer: str = "a", share: bool = True, **shared: Any) -> Any:
        section = {
            "url": redis_server.url,
            "password_file": str(redis_server.password_file),
            "timeout_ms": 200,  # generous: the test machine is shared
            "replica": name,
        } | shared
        config = router_config(
            _backends(standins, prefer),
            policy={"scale_out": False},
            **({"shared_state": section} if share else {}),
        )
        return await aiohttp_client(create_app(config))

    return make


def gen(model: str, prompt: str = "x") -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "stream": False}


async def _preload_hot(client: Any) -> None:
    for name in "ab":
        loaded = await client.post(
            f"/admin/backends/{name}/load", json={"model": "hot:1b"}, headers=ADMIN
        )
        assert loaded.status == 200


def _loads(standins: dict[str, Any], model: str) -> int:
    return sum(s.app.scheduler.load_counts.get(model, 0) for s in standins.values())


def _unloads(standins: dict[str, Any]) -> int:
    return sum(s.app.scheduler.stats["unloads"] for s in standins.values())


async def _burst(clients: list[Any], model: str, n: int = 8) -> list[Any]:
    """``n`` concurrent requests, split evenly across ``clients``."""
    return await asyncio.gather(
        *(
            clients[i % len(clients)].post("/api/generate", json=gen(model, str(i)))
            for i in range(n)
        )
    )


def _mode_is(client: Any, mode: str) -> Callable[[], bool]:
    """For wait_for: the replica's shared state is in ``mode``."""
    router = router_of(client)
    return lambda: router.shared_mode == mode


async def _metric(client: Any, name: str) -> float | None:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def _loads_sent(clients: list[Any], model: str) -> float:
    """modelfleet_loads_total for ``model`` over every replica: the loads the routers sent."""
    total = 0.0
    for client in clients:
        text = await (await client.get("/metrics")).text()
        for line in text.splitlines():
            if line.startswith("modelfleet_loads_total{") and f'model="{model}"' in line:
                total += float(line.split()[-1])
    return total


# -- (a) one load fleet-wide ---------------------------------------------------------------


async def test_two_independent_routers_load_a_cold_model_twice(replicas, standins):
    """The control for the next test: without shared state, two routers that prefer
    different backends both load the cold model (and both evict)."""
    a = await replicas("router-a", prefer="a", share=False)
    b = await replicas("router-b", prefer="b", share=False)
    await _preload_hot(a)
    await router_of(b).refresh_all()
    unloads = _unloads(standins)
    replies = await _burst([a, b], "cold:1b")
    assert [r.status for r in replies] == [200] * 8
    assert _loads(standins, "cold:1b") == 2
    assert _unloads(standins) - unloads == 2
    assert await _loads_sent([a, b], "cold:1b") == 2


async def test_cold_burst_across_two_replicas_loads_once_and_evicts_once(replicas, standins):
    a = await replicas("router-a", prefer="a")
    b = await replicas("router-b", prefer="b")
    await _preload_hot(a)
    await router_of(b).refresh_all()
    unloads = _unloads(standins)
    replies = await _burst([a, b], "cold:1b")
    assert [r.status for r in replies] == [200] * 8
    assert _loads(standins, "cold:1b") == 1
    assert _unloads(standins) - unloads == 1  # nothing evicted twice
    # the replica that lost the lease race joined the load: its metric counts no load
    assert await _loads_sent([a, b], "cold:1b") == 1
    assert len({r.headers["X-Modelfleet-Backend"] for r in replies}) == 1
    reasons = [r.headers["X-Modelfleet-Reason"] for r in replies]
    assert reasons.count("load-evict") == 1
    # the others joined the load (a straggler on a slow machine may find it done: resident)
    assert set(reasons) - {"load-evict"} <= {"join-load", "resident"}
    # the lease was released when the load ended
    await wait_for(lambda: not shared_of(a)._held and not shared_of(b)._held)


# -- (b) a drain through one replica holds for the other -----------------------------------


async def test_drain_through_one_replica_stops_routing_on_the_other(replicas, redis_server):
    a = await replicas("router-a")
    b = await replicas("router-b")
    await _preload_hot(a)
    drained = await a.post("/admin/backends/a/drain", headers=ADMIN)
    body = await drained.json()
    assert body["drained"] is True and body["shared"] is True
    await wait_for(lambda: router_of(b).fleet.backends["a"].drained, timeout=10)
    assert redis_server.client().hget("modelfleet:admin", "drained:a") == "1"
    for i in range(4):
        resp = await b.post("/api/generate", json=gen("hot:1b", str(i)))
        assert resp.status == 200 and resp.headers["X-Modelfleet-Backend"] == "b"
    await b.post("/admin/backends/a/undrain", headers=ADMIN)
    await wait_for(lambda: not router_of(a).fleet.backends["a"].drained, timeout=10)


async def test_an_admin_load_through_one_replica_is_announced_to_the_others(replicas, redis_server):
    a = await replicas("router-a")
    b = await replicas("router-b")

    def announced(model: str) -> list[str]:
        """What router-a put on the stream about ``model`` on backend b (published in the
        background, so awaited below)."""
        events = [fields for _, fields in redis_server.client().xrange("modelfleet:events")]
        return [
            f["kind"]
            for f in events
            if f["replica"] == "router-a" and f["backend"] == "b" and f["model"] == model
        ]

    loaded = await a.post("/admin/backends/b/load", json={"model": "cold:1b"}, headers=ADMIN)
    assert loaded.status == 200
    await wait_for(lambda: announced("cold:1b") == ["load", "loaded"])
    await wait_for(lambda: router_of(b).fleet.backends["b"].model("cold:1b").status == "loaded")
    failed = await a.post("/admin/backends/b/load", json={"model": "ghost:1b"}, headers=ADMIN)
    assert failed.status == 502
    await wait_for(lambda: announced("ghost:1b") == ["load", "load-failed"])
    unknown = await a.post("/admin/backends/b/load", json={"model": "nope:1b"}, headers=ADMIN)
    assert unknown.status == 404  # refused before anything is announced
    assert "does not serve model 'nope:1b'" in (await unknown.json())["error"]


async def test_a_pin_through_one_replica_holds_for_the_others(
    aiohttp_client, llama_swap, redis_server
):
    """A router-kept pin (an Ollama client's keep_alive < 0 on a llama-swap backend, which
    has no keep-alive of its own) is shared like a drain: on the stream for the replicas up,
    in the admin hash for one that joins later."""
    swap = llama_swap({"models": {"m": {"cmd": "llama-server -m m.gguf --port ${PORT}"}}})

    async def replica(name: str) -> Any:
        section = {
            "url": redis_server.url,
            "password_file": str(redis_server.password_file),
            "timeout_ms": 200,
            "replica": name,
        }
        backends = [{"name": "s", "url": swap.url, "kind": "llama-swap", "models": [{"name": "m"}]}]
        return await aiohttp_client(create_app(router_config(backends, shared_state=section)))

    def pinned(client: Any) -> bool:
        return router_of(client).fleet.backends["s"].model("m").pinned

    a, b = await replica("router-a"), await replica("router-b")
    pin = {"model": "m", "prompt": "x", "stream": False, "keep_alive": -1}
    assert (await a.post("/api/generate", json=pin, headers=ADMIN)).status == 200
    assert pinned(a)
    await wait_for(lambda: pinned(b), timeout=10)
    field = "pinned:s/m"  # a backend name has no "/", a model name may
    assert redis_server.client().hget("modelfleet:admin", field) == "1"
    c = await replica("router-c")  # joins later: reads the pin from the admin hash
    await wait_for(lambda: pinned(c), timeout=10)
    unpin = {**pin, "keep_alive": "5m"}
    assert (await a.post("/api/generate", json=unpin, headers=ADMIN)).status == 200
    await wait_for(lambda: not pinned(b) and not pinned(c), timeout=10)
    assert redis_server.client().hget("modelfleet:admin", field) == "0"


# -- (c) Redis away: every replica serves alone, and rejoins -------------------------------


async def test_redis_killed_mid_traffic_fails_no_request_and_rejoins(replicas, redis_server):
    a = await replicas("router-a")
    b = await replicas("router-b")
    await _preload_hot(a)
    await router_of(b).refresh_all()
    assert (await (await a.get("/readyz")).json())["shared_state"] == "connected"
    assert await _metric(a, "modelfleet_shared_state_connected") == 1.0

    statuses: list[int] = []
    killed = asyncio.Event()

    async def traffic(client: Any, tag: str) -> None:
        for i in range(12):
            if i == 4:
                await killed.wait()  # the rest runs without Redis
            resp = await client.post("/api/generate", json=gen("hot:1b", f"{tag}{i}"))
            statuses.append(resp.status)

    workers = [
        asyncio.create_task(traffic(c, f"{n}{k}"))
        for n, c in (("a", a), ("b", b))
        for k in range(2)
    ]
    await wait_for(lambda: len(statuses) >= 8, timeout=30)
    redis_server.kill()
    killed.set()
    await asyncio.gather(*workers)
    assert statuses == [200] * 48

    for client in (a, b):
        await wait_for(_mode_is(client, "degraded"), timeout=10)
        ready = await client.get("/readyz")
        assert ready.status == 200 and (await ready.json())["shared_state"] == "degraded"
        assert await _metric(client, "modelfleet_shared_state_connected") == 0.0
    state = await (await a.get("/admin/state", headers=ADMIN)).json()
    assert state["shared_state"]["mode"] == "degraded" and state["shared_state"]["last_error"]

    # a drain given while Redis is away holds locally, and is shared when it returns
    drained = await (await a.post("/admin/backends/b/drain", headers=ADMIN)).json()
    assert drained["shared"] is False and drained["shared_state"] == "degraded"
    cold = await b.post("/api/generate", json=gen("cold:1b"))  # a cold load, alone
    assert cold.status == 200

    redis_server.start()  # a fresh, empty Redis (no persistence)
    for client in (a, b):
        await wait_for(_mode_is(client, "connected"), timeout=20)
        assert await _metric(client, "modelfleet_shared_state_connected") == 1.0
    await wait_for(lambda: router_of(b).fleet.backends["b"].drained, timeout=20)
    assert redis_server.client().hget("modelfleet:admin", "drained:b") == "1"


async def test_a_frozen_redis_costs_a_cold_request_at_most_the_timeout(replicas, redis_server):
    """Redis that accepts connections but never answers (SIGSTOP): the first cold request's
    lease check gives up after timeout_ms, the replica serves alone and says so."""
    a = await replicas("router-a")
    await _preload_hot(a)
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        replies = await asyncio.gather(
            *(a.post("/api/generate", json=gen("cold:1b", str(i))) for i in range(4))
        )
        assert [r.status for r in replies] == [200] * 4
        assert router_of(a).shared_mode == "degraded"
        assert "Timeout" in (shared_of(a).last_error or "")
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    await wait_for(lambda: router_of(a).shared_mode == "connected", timeout=30)


# -- (d) a lease whose holder died expires ----------------------------------------------------


async def test_a_dead_holders_lease_expires_and_another_replica_loads(
    replicas, redis_server, standins
):
    a = await replicas("router-a", lease_ttl_ms=400)
    b = await replicas("router-b", lease_ttl_ms=400)
    claim = await shared_of(a).claim_load("cold:1b", "a")
    assert claim.outcome == "won"
    await a.close()  # router-a dies mid-load: nobody renews or releases its lease
    r = redis_server.client()
    assert r.get("modelfleet:lease:load:cold:1b") == f"router-a:a:{claim.token}"
    await wait_for(lambda: r.get("modelfleet:lease:load:cold:1b") is None, timeout=10)
    # router-b heard of the load (the event stream) and forgets it as the lease runs out
    cold = router_of(b).fleet.backends["a"].model("cold:1b")
    await wait_for(lambda: cold.status == "cold", timeout=10)

    resp = await b.post("/api/generate", json=gen("cold:1b"))
    assert resp.status == 200
    assert resp.headers["X-Modelfleet-Reason"] in ("load-fits", "load-evict")
    assert _loads(standins, "cold:1b") == 1
    events = [fields for _id, fields in r.xrange("modelfleet:events")]
    assert {
        "replica": "router-b",
        "kind": "load",
        "backend": resp.headers["X-Modelfleet-Backend"],
        "model": "cold:1b",
    } in events


async def test_a_lease_held_elsewhere_makes_a_request_join_that_load(replicas, redis_server):
    """The cheap pre-check: a cold model whose lease another replica holds is not decided
    as a load here; the request joins the holder's load on the holder's backend."""
    b = await replicas("router-b")
    r = redis_server.client()
    r.set("modelfleet:lease:load:cold:1b", "router-x:a:feedc0de", px=60_000)
    resp = await b.post("/api/generate", json=gen("cold:1b"))
    assert resp.status == 200
    assert resp.headers["X-Modelfleet-Backend"] == "a"
    assert resp.headers["X-Modelfleet-Reason"] == "join-load"


async def test_a_lease_lost_with_a_restarted_redis_is_taken_again_while_the_load_runs(
    replicas, redis_server
):
    """Redis restarts empty (no persistence) while router-a loads: once back, a's renewal
    puts its lease back, so router-b sees the load under way rather than a cold model it
    would load (and evict for) a second time."""
    a = await replicas("router-a", lease_ttl_ms=300)
    b = await replicas("router-b", lease_ttl_ms=300)
    claim = await shared_of(a).claim_load("cold:1b", "a")
    assert claim.outcome == "won"
    key, value = "modelfleet:lease:load:cold:1b", f"router-a:a:{claim.token}"
    redis_server.kill()
    await wait_for(_mode_is(a, "degraded"), timeout=10)
    redis_server.start()
    await wait_for(_mode_is(a, "connected"), timeout=20)
    await wait_for(_mode_is(b, "connected"), timeout=20)
    r = redis_server.client()
    await wait_for(lambda: r.get(key) == value, timeout=10)
    holder = await shared_of(b).lease_holder("cold:1b")
    assert holder is not None and (holder.replica, holder.backend) == ("router-a", "a")
    shared_of(a).release_load("cold:1b", "a", claim.token, ok=True)
    await wait_for(lambda: r.get(key) is None, timeout=10)
    assert not shared_of(a)._held


# -- (e) the password stays secret; bad config names its key ----------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"url": "http://127.0.0.1:6379"}, "shared_state.url"),
        ({"url": "redis://127.0.0.1:6379/0", "timeout_ms": 0}, "shared_state.timeout_ms"),
        ({"url": "redis://127.0.0.1:6379/0", "replica": "a b"}, "shared_state.replica"),
        ({"url": "redis://127.0.0.1:6379/0", "passwd": "x"}, "shared_state.passwd"),
        ({"url": "redis://127.0.0.1:6379/0?password=s3cret-in-query"}, "shared_state.url"),
        ({"url": "redis://127.0.0.1:6379/0?db=1&password=s3cret-in-query"}, "shared_state.url"),
        ({"timeout_ms": 50}, "shared_state.url"),
    ],
)
def test_bad_shared_state_config_names_the_key(tmp_path, section, key):
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump({"shared_state": section}))
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert f"{key}:" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_without_shared_state_the_router_is_alone_and_never_imports_redis(tmp_path):
    code = (
        "import sys; from modelfleet.router.app import create_app;"
        "from modelfleet.router.config import RouterConfig;"
        "create_app(RouterConfig()); print('redis' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr


async def test_shutdown_stops_the_listener_when_redis_py_turns_the_cancel_into_an_error(
    replicas, redis_server
):
    """redis-py may answer a cancel inside a call with ConnectionError (it drops the
    connection it was cut off in); the listener must stop then, not reconnect forever and
    hold the app's shutdown (a router restart) until systemd kills it."""
    a = await replicas("router-a")
    shared = shared_of(a)
    entered = asyncio.Event()

    async def join_cut_off() -> str:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise redis.exceptions.ConnectionError("Connection closed by server.") from None
        return "0-0"

    shared.connected = False  # as after a lost connection: run() joins again
    shared._join = join_cut_off  # type: ignore[method-assign]
    task = asyncio.create_task(shared.run())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()


async def test_readyz_says_off_without_shared_state(make_router, standins):
    client = await make_router(_backends(standins, "a"))
    assert (await (await client.get("/readyz")).json())["shared_state"] == "off"
    assert await _metric(client, "modelfleet_shared_state_connected") is None


async def test_redis_password_never_shows(replicas, redis_server, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    a = await replicas("router-a")
    router = router_of(a)
    assert router.shared_mode == "connected"
    redis_server.kill()
    await a.post("/api/generate", json=gen("hot:1b"))
    await wait_for(lambda: router.shared_mode == "degraded", timeout=10)
    # a wrong password: refused by Redis, reported without the password
    redis_server.start()
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-" + PASSWORD)
    wrong.chmod(0o600)
    bad = await replicas("router-bad", password_file=str(wrong))
    await wait_for(lambda: shared_of(bad).last_error is not None, timeout=10)
    assert router_of(bad).shared_mode == "degraded"

    seen = [caplog.text, repr(router.shared), repr(router.config)]
    for client in (a, bad):
        seen.append(await (await client.get("/admin/state", headers=ADMIN)).text())
        seen.append(await (await client.get("/readyz")).text())
    # a password put in the URL is refused, without quoting it
    config = tmp_path / "router.yaml"
    config.write_text(f"shared_state:\n  url: redis://:{PASSWORD}@127.0.0.1:1/0\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert "shared_state.url" in str(refused.value)
    seen.append(str(refused.value))
    # a password file others may read is refused
    wrong.chmod(0o644)
    with pytest.raises(ConfigError, match=r"shared_state\.password_file"):
        router_config(
            [], shared_state={"url": redis_server.url, "password_file": str(wrong)}
        ).shared_state.password()  # type: ignore[union-attr]
    assert "redis" in caplog.text.lower()  # the log did speak about Redis
    for text in seen:
        assert PASSWORD not in text


async def test_a_redis_older_than_7_is_named_and_the_replica_serves_alone(
    replicas, redis_server, standins, monkeypatch, caplog
):
    """Redis 6 refuses SET NX GET as a syntax error: every claim used to read as "Redis
    unreachable", and the replica flapped between joined and degraded without saying why."""
    real_info = redis.asyncio.Redis.info

    async def info_of_an_old_redis(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**await real_info(self, *args, **kwargs), "redis_version": "6.2.14"}

    monkeypatch.setattr(redis.asyncio.Redis, "info", info_of_an_old_redis)
    a = await replicas("router-a")
    router = router_of(a)
    await wait_for(lambda: router.shared is not None and router.shared.last_error is not None)
    state = await (await a.get("/admin/state", headers=ADMIN)).json()
    assert state["shared_state"]["mode"] == "degraded"
    assert state["shared_state"]["last_error"] == (
        "Redis 6.2.14 is too old: load leases need 7.0 or later (SET NX GET)"
    )
    resp = await a.post("/api/generate", json=gen("cold:1b"))
    assert resp.status == 200  # alone, as with no Redis at all
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "shared state: Redis 6.2.14 is too old: load leases need 7.0 or later (SET NX GET); "
        "serving alone"
    ]
