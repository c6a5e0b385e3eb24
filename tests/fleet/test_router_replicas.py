"""Two router replicas, Redis and a keepalived VIP on the local container fleet (marker ``fleet``).

Hosts (``tests/fleet/inventories/replicas.py``), on a podman network of the fleet's own: ``ra``
and ``rb`` each run the real llama-server (gemma3 270M) and a router replica; ``ra`` also runs
Redis (``router_state``); keepalived keeps the VIP (``.200`` of the network) on a ready router.

1. The deploy converges both hosts, rolls the router out one replica at a time, and a second
   run changes nothing (pyinfra's JSON totals); ``pytest tests/infra`` passes on both hosts
   (Redis and keepalived as the roles say: bind, password, 0600 secrets, /readyz through
   the VIP; the VIP on exactly one router).
2. The issue's scenarios, with their figures printed (``pytest -s`` shows them):
   (a) 8 concurrent requests for a cold model, 4 to each replica -> exactly one load;
   (d) a drain through replica A -> replica B stops routing to that backend (time printed);
   (c) Redis stopped during a soak through the VIP -> 0 failed, both replicas degraded, both
       back to connected after Redis returns;
   (b) replica A's router killed during a soak through the VIP -> failover time and the
       requests that failed (only those in flight on A, each with a connection error).

Run alone (about 6 minutes, most of it the first deploy's apt installs):

    .venv/bin/pytest -s -p no:cacheprovider tests/fleet/test_router_replicas.py
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.rolling_change import load
from modelfleet.deploy.lab import localfleet, localstack
from modelfleet.deploy.lab.localstack import GEMMA
from tests.fleet.conftest import new_fleet_name, run_pyinfra

REPO = Path(__file__).resolve().parents[2]
INVENTORY = "tests/fleet/inventories/replicas.py"
PORT = 11434
BACKEND_PORT = 8080
SERVICE = "modelfleet-router"
# Errors of a request whose connection was refused: nothing was sent, a client may resend it.
REFUSED = ("Connection refused", "Connect call failed")


@dataclass
class Replicas:
    name: str
    hosts: dict[str, localfleet.RunningHost]
    env: dict[str, str]
    vip: str
    workdir: Path

    def deploy(self) -> dict[str, Any]:
        result = run_pyinfra(INVENTORY, "deploy.py", env=self.env, check=False)
        if result["returncode"] != 0:
            # The failing operations' lines, wherever they are in pyinfra's long output.
            lines = result["stderr"].splitlines()
            errors = [
                "\n".join(lines[max(n - 3, 0) : n + 3])
                for n, line in enumerate(lines)
                if "rror" in line or "failed at" in line
            ]
            pytest.fail("the deploy failed:\n" + "\n--\n".join(errors[:12]))
        return result

    def sh(self, host: str, command: str, check: bool = True) -> str:
        done = subprocess.run(
            ["podman", "exec", self.hosts[host].container, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=check,
        )
        return done.stdout.strip()

    def url(self, host: str) -> str:
        return f"http://{self.hosts[host].address}:{PORT}"

    def token(self, host: str) -> str:
        return self.sh(host, "cat /etc/modelfleet/admin-token")

    def vip_holders(self) -> list[str]:
        ip = self.vip.split("/")[0]
        return [h for h in self.hosts if f" {ip}/" in self.sh(h, "ip -o -4 addr show")]


def get_json(url: str, token: str | None = None, timeout: float = 5) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # /readyz answers 503 with a JSON body
        return json.load(exc)


def post_json(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, Any, str]:
    """(status, JSON answer, X-Modelfleet-Backend)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            return resp.status, json.load(resp), resp.headers.get("X-Modelfleet-Backend", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), ""


def chat(url: str, text: str = "Say hi.") -> tuple[int, Any, str]:
    body = {"model": GEMMA, "messages": [{"role": "user", "content": text}], "max_tokens": 4}
    return post_json(f"{url}/v1/chat/completions", body)


def loaded_on(replicas: Replicas, host: str) -> str:
    """gemma's status on the host's llama-server (``loaded``, ``unloaded``, ``loading``)."""
    listing = get_json(f"http://{replicas.hosts[host].address}:{BACKEND_PORT}/models")
    entry = next(e for e in listing["data"] if e["id"] == GEMMA)
    status = entry.get("status") or {}
    return str(status.get("value", status) if isinstance(status, dict) else status)


def find_key(value: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a JSON document (None if absent)."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_key(item, key)
            if found is not None:
                return found
    return None


def shared_state(replicas: Replicas, host: str) -> Any:
    """What the replica's /readyz says about the shared state (``connected``/``degraded``)."""
    state = find_key(get_json(f"{replicas.url(host)}/readyz"), "shared_state")
    return state.get("state", state.get("status")) if isinstance(state, dict) else state


def redis_link(replicas: Replicas, host: str) -> Any:
    """The replica's shared-state snapshot from /admin/state (mode, reconnects, last error)."""
    return get_json(f"{replicas.url(host)}/admin/state", replicas.token(host))["shared_state"]


def loads_sent(replicas: Replicas) -> Counter[str]:
    """modelfleet_loads_total by reason, summed over both replicas' /metrics: the loads the
    routers sent (a replica that loses the lease race joins the winner's load and sends none);
    the loads themselves are counted on the backends too (:func:`loaded_on`)."""
    total: Counter[str] = Counter()
    for host in replicas.hosts:
        with urllib.request.urlopen(f"{replicas.url(host)}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("modelfleet_loads_total{"):
                    labels, value = line.rsplit(" ", 1)
                    reason = labels.split('reason="', 1)[1].split('"', 1)[0]
                    total[reason] += int(float(value))
    return total


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.1) -> float:
    """Seconds until ``check()`` holds; fails naming ``what`` after ``timeout_s``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(every_s)
    return time.monotonic() - started


def subnet_of(network: str) -> ipaddress.IPv4Network:
    out = subprocess.run(
        ["podman", "network", "inspect", network], capture_output=True, text=True, check=True
    ).stdout
    return ipaddress.IPv4Network(json.loads(out)[0]["subnets"][0]["subnet"])


@pytest.fixture(scope="module")
def replicas(fleet_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    name = new_fleet_name()
    network = f"{name}-net"
    workdir = tmp_path_factory.mktemp("replicas")
    files_dir = workdir / "files"
    files_dir.mkdir()
    try:
        files = localstack.build_stack_files(files_dir)
    except localstack.StackError as exc:
        pytest.skip(str(exc))
    specs = [localfleet.ContainerHost(h, capabilities=localfleet.VRRP_CAPS) for h in ("ra", "rb")]
    try:
        hosts = localfleet.up(specs, fleet=name, network=network)
        gateway = localfleet.network_gateway(network)
        assert gateway, f"podman network {network} has no gateway"
        subnet = subnet_of(network)
        vip = f"{subnet[200]}/{subnet.prefixlen}"
        with localstack.serve_files(files_dir, host=gateway) as files_url:
            data = {
                **localstack.stack_data(
                    files_url, files, {GEMMA: localstack.gemma_entry(files_url, ["cpu"])}
                ),
                "fleet_name": f"replicas-{name}",
                "backend": "llama-server",
                "gpus": [],
                "ram_mb": 8192,
                "router_state": "ra",
                "router_vip": vip,
                # 50 ms (the default) is for router hosts with cores to spare; here two routers,
                # two llama-servers decoding and Redis share 2 cores, and a call past the
                # timeout sends a replica into degraded mode (it then loads alone)
                "redis_state_timeout_ms": 250,
                # The containers have no user namespaces for Debian's PrivateUsers=true.
                "redis_state_service_overrides": {"PrivateUsers": "false"},
            }
            data_file = workdir / "data.json"
            localstack.write_data(data_file, data)
            env = {
                **localstack.fleet_env(name, data_file, files_url),
                # The fleet's shared secrets stay with this test run.
                "MODELFLEET_SECRETS_DIR": str(workdir / "secrets"),
            }
            yield Replicas(name, {h.name: h for h in hosts}, env, vip, workdir)
    finally:
        localfleet.down(name)


def rollout_hosts(result: dict[str, Any]) -> list[list[str]]:
    """Per "Roll out release" operation, in the order pyinfra ran them: the hosts it ran on."""
    return [
        sorted(set(op["success"]) | set(op["no_change"]) | set(op["error"]))
        for op in result["results"]["operations"]
        if "modelfleet router | Roll out release" in op["name"]
    ]


def test_deploy_redis_keepalived_replicas_one_at_a_time_rerun_clean(replicas: Replicas) -> None:
    first = replicas.deploy()
    totals = first["results"]["totals"]
    assert totals["error"] == 0 and not first["results"]["failed_hosts"], first["stderr"][-3000:]
    # One replica at a time: on each host the rollout runs from its side-port candidate to the
    # restarted service answering /readyz; those windows do not overlap (journal timestamps on
    # the kernel's monotonic clock, which both containers share).
    assert rollout_hosts(first) == [["ra", "rb"]], rollout_hosts(first)
    windows = sorted((*rollout_window(replicas, host), host) for host in replicas.hosts)
    (_, first_ready, first_host), (second_start, _, second_host) = windows
    print(
        f"\nrouter rollout: {second_host}'s began {(second_start - first_ready) / 1e6:.1f} s "
        f"after {first_host}'s restarted router started"
    )
    assert first_ready < second_start, windows

    # Redis and keepalived as the roles say, checked by the same testinfra checks a user runs
    # on a real fleet (tests/infra/test_router_state.py: bind to the fleet address and
    # loopback, password required, soft state, 0600 secrets; keepalived on every router,
    # /readyz through the VIP), and the hosts themselves (tests/infra/test_fleet_hosts.py).
    wait_for("the VIP on one router", lambda: len(replicas.vip_holders()) == 1, 30)
    verified = run_infra_checks(replicas)
    assert verified.returncode == 0, verified.stdout[-6000:] + verified.stderr[-2000:]
    assert " passed" in verified.stdout and " failed" not in verified.stdout, verified.stdout
    print(f"\ntests/infra on ra and rb: {verified.stdout.strip().splitlines()[-1]}")
    # From here: what only the controller and the pair can show.
    password = replicas.workdir / "secrets" / f"replicas-{replicas.name}" / "redis-password"
    secret = password.read_text().strip()
    assert secret not in first["stderr"] and secret not in json.dumps(first["results"])
    assert secret not in verified.stdout and secret not in verified.stderr
    for host in replicas.hosts:  # the controller's copy is the one the hosts use
        assert replicas.sh(host, "cat /etc/modelfleet/redis.secret") == secret, host
    assert len(replicas.vip_holders()) == 1, replicas.vip_holders()
    vip_url = f"http://{replicas.vip.split('/')[0]}:{PORT}"
    assert get_json(f"{vip_url}/readyz")["ready"] is True

    second = replicas.deploy()
    assert second["results"]["totals"]["success"] == 0, [
        op["name"] for op in second["results"]["operations"] if op["success"]
    ]
    assert second["results"]["totals"]["error"] == 0


def run_infra_checks(replicas: Replicas) -> subprocess.CompletedProcess[str]:
    """``pytest tests/infra`` against both hosts, with the plan from the replicas inventory."""
    hosts = ",".join(f"podman://{h.container}" for h in replicas.hosts.values())
    pytest_args = ["-p", "no:cacheprovider", "-q", "-rs", "tests/infra", "--inventory", INVENTORY]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args, f"--hosts={hosts}"],
        cwd=REPO,
        env={**os.environ, **replicas.env},
        capture_output=True,
        text=True,
        check=False,
    )


def rollout_window(replicas: Replicas, host: str) -> tuple[int, int]:
    """(first message of the side-port candidate, start of the live router process) on
    ``host``, in microseconds of the kernel's monotonic clock."""
    out = replicas.sh(host, f"journalctl -o json -u {SERVICE}-candidate.service")
    candidate = min(int(json.loads(line)["__MONOTONIC_TIMESTAMP"]) for line in out.splitlines())
    show = f"systemctl show -p ExecMainStartTimestampMonotonic --value {SERVICE}.service"
    return candidate, int(replicas.sh(host, show))


def test_a_cold_model_loads_once_for_both_replicas(replicas: Replicas) -> None:
    for host in replicas.hosts:  # cold: unloaded on both backends, and both routers know it
        backend = f"http://{replicas.hosts[host].address}:{BACKEND_PORT}"
        post_json(f"{backend}/models/unload", {"model": GEMMA})

        def unloaded(host: str = host) -> bool:
            return loaded_on(replicas, host) != "loaded"

        wait_for(f"gemma unloaded on {host}", unloaded, 60)
    time.sleep(5)  # more than two router polls: both replicas saw the backends cold
    sent_before = loads_sent(replicas)
    reconnects_before = {h: redis_link(replicas, h)["reconnects"] for h in replicas.hosts}
    urls = [replicas.url(h) for h in replicas.hosts] * 4
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(lambda u: chat(u[1], f"Hello {u[0]}."), enumerate(urls)))
    statuses = [status for status, _, _ in answers]
    backends = sorted({backend for _, _, backend in answers})
    loaded = [h for h in replicas.hosts if loaded_on(replicas, h) == "loaded"]
    sent = loads_sent(replicas) - sent_before
    # one cold load, whichever replica decided it; a second copy is a scale-out, which the
    # policy may add when the queue's wait (on an observed service time) exceeds a load and
    # another host has free room: the lease serialises loads, it does not forbid replicas
    scale_outs = sent.pop("scale-out", 0)
    print(
        f"\n(a) 8 concurrent requests, 4 per replica, cold model: statuses {statuses}, "
        f"served by {backends}; loads in the fleet (backends' /models): {len(loaded)} (on "
        f"{loaded}); loads the routers sent (both replicas' modelfleet_loads_total): "
        f"{dict(sent)}, and {scale_outs} scale-out(s)"
    )
    assert statuses == [200] * 8, answers
    # A replica whose Redis call ran past timeout_ms serves alone (degraded mode, by design),
    # and then loads on its own: say so if that is what happened.
    links = {h: redis_link(replicas, h) for h in replicas.hosts}
    lapsed = {h: link for h, link in links.items() if link["reconnects"] > reconnects_before[h]}
    assert sum(sent.values()) == 1, (
        f"the routers sent {dict(sent)} cold loads of gemma, not 1; replicas that lost Redis "
        f"meanwhile: {lapsed or 'none'}"
    )
    assert len(loaded) == 1 + scale_outs, (
        f"gemma loaded on {loaded}, but the routers sent 1 load and {scale_outs} scale-out(s)"
    )
    assert set(backends) <= {f"{host}-cpu" for host in loaded}, backends


def test_a_drain_through_one_replica_holds_for_the_other(replicas: Replicas) -> None:
    backend = "ra-cpu"
    token_a, token_b = replicas.token("ra"), replicas.token("rb")

    def drained_in_b() -> bool:
        state = get_json(f"{replicas.url('rb')}/admin/state", token_b)
        return any(b["name"] == backend and b["drained"] for b in state["backends"])

    assert not drained_in_b()
    started = time.monotonic()
    status, _, _ = post_json(f"{replicas.url('ra')}/admin/backends/{backend}/drain", {}, token_a)
    assert status == 200
    seen_s = wait_for("replica B sees the drain", drained_in_b, 30, every_s=0.01)
    served = [chat(replicas.url("rb"))[2] for _ in range(4)]
    print(
        f"\n(d) drain of {backend} through replica ra: replica rb shows it drained after "
        f"{seen_s * 1000:.0f} ms (measured {time.monotonic() - started:.2f} s incl. 4 requests); "
        f"rb then served the next 4 requests from {sorted(set(served))}"
    )
    assert backend not in served, served
    assert seen_s < 10  # generous bound: the goal is 1 s (the figure is printed)
    status, _, _ = post_json(f"{replicas.url('rb')}/admin/backends/{backend}/undrain", {}, token_b)
    assert status == 200
    wait_for("replica A sees the undrain", lambda: not drained_a(replicas, backend, token_a), 30)


def drained_a(replicas: Replicas, backend: str, token: str) -> bool:
    state = get_json(f"{replicas.url('ra')}/admin/state", token)
    return any(b["name"] == backend and b["drained"] for b in state["backends"])


def test_redis_down_during_a_soak_fails_nothing(replicas: Replicas) -> None:
    vip_url = f"http://{replicas.vip.split('/')[0]}:{PORT}"
    hosts = list(replicas.hosts)
    assert [shared_state(replicas, h) for h in hosts] == ["connected", "connected"]
    with load(vip_url, 4, replicas.workdir) as stop:
        time.sleep(3)
        stopped = time.time()
        replicas.sh("ra", "systemctl stop redis-server")
        degraded_s = wait_for(
            "both replicas report degraded",
            lambda: all(shared_state(replicas, h) == "degraded" for h in hosts),
            30,
        )
        time.sleep(3)
        replicas.sh("ra", "systemctl start redis-server")
        back_s = wait_for(
            "both replicas connected again",
            lambda: all(shared_state(replicas, h) == "connected" for h in hosts),
            60,
        )
        time.sleep(2)
        records = stop()
    failed = [r for r in records if r["outcome"] != "ok"]
    during = [r for r in records if r["ended"] >= stopped]
    print(
        f"\n(c) Redis stopped during a soak through the VIP: {len(records)} requests "
        f"({len(during)} after the stop), {len(failed)} failed; both replicas degraded after "
        f"{degraded_s:.1f} s, both connected again {back_s:.1f} s after Redis started"
    )
    assert not failed, failed[:5]
    assert len(during) >= 4


def test_a_replica_killed_during_a_soak_fails_over_through_the_vip(replicas: Replicas) -> None:
    vip_url = f"http://{replicas.vip.split('/')[0]}:{PORT}"
    holder = replicas.vip_holders()
    assert len(holder) == 1
    victim = holder[0]
    other = next(h for h in replicas.hosts if h != victim)
    moved_at: list[float] = []

    def watch_vip() -> None:
        while not moved_at:
            if replicas.vip_holders() == [other]:
                moved_at.append(time.time())
            time.sleep(0.1)

    with load(vip_url, 4, replicas.workdir) as stop:
        time.sleep(4)
        watcher = threading.Thread(target=watch_vip, daemon=True)
        watcher.start()
        # A crash: the process killed (its requests in flight are cut), the socket gone.
        killed = time.time()
        replicas.sh(
            victim,
            f"systemctl kill -s KILL {SERVICE}.service; systemctl stop {SERVICE}.socket "
            f"{SERVICE}.service",
        )
        wait_for("the VIP moves", lambda: bool(moved_at), 60)
        time.sleep(4)
        records = stop()
    watcher.join(timeout=5)
    moved = moved_at[0]
    after = sorted(
        (r for r in records if r["started"] >= killed and r["outcome"] == "ok"),
        key=lambda r: r["started"],
    )
    assert after, "no request succeeded through the VIP after the kill"
    failed = [r for r in records if r["outcome"] != "ok"]
    refused = [r for r in failed if any(s in (r["error"] or "") for s in REFUSED)]
    cut = [r for r in failed if r not in refused]
    errors = sorted({(r["error"] or r["outcome"]).split(":")[0] for r in cut})
    print(
        f"\n(b) replica {victim}'s router killed during a soak through the VIP (4 clients): "
        f"{len(records)} requests; the VIP on {other} after {moved - killed:.1f} s; the first "
        f"request that succeeded was sent {after[0]['started'] - killed:.1f} s after the kill "
        f"(answered after {after[0]['ended'] - killed:.1f} s); {len(cut)} failed after "
        f"reaching {victim} (in flight, or in its socket's backlog, when it died: {errors}); "
        f"{len(refused)} connection attempts refused before the VIP moved (nothing sent; "
        "the load generator retries at once)"
    )
    # Only requests that were on the killed replica failed, when it died, each with a
    # connection error or a cut stream (never a wrong answer): none after the VIP moved.
    for record in cut:
        assert record["started"] < moved and killed - 1 <= record["ended"] <= moved, record
        assert record["outcome"] == "cut" or "Error" in (record["error"] or ""), record
    for record in refused:
        assert killed - 1 <= record["started"] <= moved + 1, record
    assert all(r["outcome"] == "ok" for r in records if r["started"] > moved + 1)
