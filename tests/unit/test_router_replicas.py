"""Router replicas, deploy side: the inventory checks (file/host/key, before any host is
touched), the shared_state section of router.yaml, Redis's and keepalived's configs, and a
single-router fleet rendered exactly as before."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import yaml

from modelfleet.deploy.inventory import FleetError, load_fleet
from modelfleet.deploy.plan import hardware_from_overrides, plan_fleet
from modelfleet.deploy.render import RenderedFile, parse_back, render_host
from modelfleet.roles.keepalived import auth_block
from modelfleet.roles.secrets import controller_secret

CATALOG = """
model_catalog = {
    "small": {"gguf": {"url": "http://files/s.gguf", "sha256": "%s", "file": "s.gguf"},
              "size_mb": 300, "kv_mb_per_1k_ctx": 10, "groups": ["cpu"]},
}
""" % ("0" * 64)

HOSTS = """
cpu = [("r1", {"address": "10.89.0.11", "backend": "llama-server", "gpus": [], "ram_mb": 16384}),
       ("r2", {"address": "10.89.0.12", "backend": "llama-server", "gpus": [], "ram_mb": 16384})]
router = ["r1", "r2"]
"""


def files_of(path: str, host: str, data: Mapping[str, object] | None = None) -> dict[str, str]:
    fleet = load_fleet(path)
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    knobs = {"keepalived_interface": "eth0", **(data or {})}
    return {f.path: f.content for f in render_host(plan, plan.host(host), knobs)}


def test_several_routers_need_a_router_state(write_inventory) -> None:
    path = write_inventory(HOSTS, {"all": CATALOG})
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert f"{path}: key router_state: not set, but the 'router' group holds 2 hosts" in str(
        err.value
    )


def test_router_state_must_be_a_host_of_the_inventory(write_inventory) -> None:
    path = write_inventory(HOSTS, {"all": CATALOG + 'router_state = "r3"\n'})
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert "group_data/all.py: key router_state: 'r3' is not a host of this inventory" in str(
        err.value
    )


@pytest.mark.parametrize(
    ("vip", "says"),
    [
        ("10.89.0.200", "expected an IPv4 address with its prefix"),
        ("10.90.0.200/24", "is not in the network of router host r1"),
        ("10.89.0.11/24", "is the address of router host r1"),
    ],
)
def test_bad_router_vip_names_file_and_key(write_inventory, vip: str, says: str) -> None:
    data = CATALOG + f'router_state = "r1"\nrouter_vip = "{vip}"\n'
    path = write_inventory(HOSTS, {"all": data})
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    assert "group_data/all.py: key router_vip:" in str(err.value)
    assert says in str(err.value)


@pytest.fixture
def replicas(write_inventory) -> str:
    data = CATALOG + 'router_state = "r1"\nrouter_vip = "10.89.0.200/24"\n'
    return str(write_inventory(HOSTS, {"all": data}))


def test_each_replica_gets_the_shared_state_section(replicas: str) -> None:
    for host in ("r1", "r2"):
        text = files_of(replicas, host)["/etc/modelfleet/router.yaml"]
        assert yaml.safe_load(text)["shared_state"] == {
            "url": "redis://10.89.0.11:6379/0",  # no password in the URL
            "password_file": "/etc/modelfleet/redis.secret",
            "replica": host,
        }
        # timeout_ms is the router's default (50) unless the knob says otherwise.
        parsed = parse_back(
            RenderedFile(path="/etc/modelfleet/router.yaml", content=text, role="router")
        )
        assert (parsed.shared_state.replica, parsed.shared_state.timeout_ms) == (host, 50)
    text = files_of(replicas, "r2", {"redis_state_timeout_ms": 80})["/etc/modelfleet/router.yaml"]
    assert yaml.safe_load(text)["shared_state"]["timeout_ms"] == 80


def test_redis_runs_on_the_router_state_host_only(replicas: str) -> None:
    r1, r2 = files_of(replicas, "r1"), files_of(replicas, "r2")
    conf = r1["/etc/redis/modelfleet.conf"]
    assert "bind 10.89.0.11 127.0.0.1 -::1\n" in conf
    for line in ("protected-mode yes", 'save ""', "appendonly no", "port 6379"):
        assert f"\n{line}\n" in conf
    assert "include /etc/redis/modelfleet-secret.conf" in conf
    assert "\nrequirepass" not in conf  # the password is only in the 0600 file
    dropin = r1["/etc/systemd/system/redis-server.service.d/modelfleet.conf"]
    assert "ExecStart=\nExecStart=/usr/bin/redis-server /etc/redis/modelfleet.conf" in dropin
    assert "PrivateUsers" not in dropin  # Debian's hardening stays unless a knob says otherwise
    override = {"redis_state_service_overrides": {"PrivateUsers": False}}
    dropin = files_of(replicas, "r1", override)[
        "/etc/systemd/system/redis-server.service.d/modelfleet.conf"
    ]
    assert dropin.endswith("--daemonize no\nPrivateUsers=false\n")
    assert not any("redis" in path for path in r2)


def test_keepalived_unicast_to_the_other_routers(replicas: str) -> None:
    r1 = files_of(replicas, "r1")["/etc/keepalived/keepalived.conf"]
    r2 = files_of(replicas, "r2")["/etc/keepalived/keepalived.conf"]
    assert "unicast_src_ip 10.89.0.11" in r1 and "unicast_src_ip 10.89.0.12" in r2
    assert "unicast_peer {\n        10.89.0.12\n    }" in r1
    assert "unicast_peer {\n        10.89.0.11\n    }" in r2
    assert "priority 150" in r1 and "priority 140" in r2
    assert "nopreempt" in r1 and "state BACKUP" in r1
    assert "10.89.0.200/24 dev eth0" in r1
    assert "http://127.0.0.1:11434/readyz" in r1
    assert "include /etc/keepalived/modelfleet-auth.conf" in r1 and "auth_pass" not in r1


def test_replica_files_parse_back(replicas: str) -> None:
    fleet = load_fleet(replicas)
    plan = plan_fleet(fleet, hardware_from_overrides(fleet))
    files = render_host(plan, plan.host("r1"), {"keepalived_interface": "eth0"})
    parsed = {f.path: parse_back(f) for f in files if f.role in ("redis_state", "keepalived")}
    assert ["save", ""] in parsed["/etc/redis/modelfleet.conf"]
    dropin = parsed["/etc/systemd/system/redis-server.service.d/modelfleet.conf"]
    assert dropin["Service"]["ExecStart"].endswith("--daemonize no")
    assert parsed["/etc/keepalived/keepalived.conf"] == [
        "global_defs",
        "vrrp_script router_ready",
        "vrrp_instance modelfleet_router",
    ]


def test_keepalived_without_an_interface_is_a_clear_error(replicas: str) -> None:
    with pytest.raises(ValueError, match="host r1: key keepalived_interface"):
        files_of(replicas, "r1", {"keepalived_interface": None})


def test_a_single_router_fleet_gets_no_replica_parts(write_inventory) -> None:
    path = write_inventory(
        HOSTS.replace('router = ["r1", "r2"]', 'router = ["r1"]'), {"all": CATALOG}
    )
    files = files_of(path, "r1")
    assert "shared_state" not in files["/etc/modelfleet/router.yaml"]
    assert not [p for p in files if "redis" in p or "keepalived" in p]


def test_auth_block_keeps_to_what_vrrp_accepts() -> None:
    assert "auth_pass abcd1234\n" in auth_block("abcd1234")
    with pytest.raises(ValueError, match="1-8 characters"):
        auth_block("abcd12345")


def test_controller_secret_is_made_once_and_kept_private(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MODELFLEET_SECRETS_DIR", str(tmp_path))
    first = controller_secret("fleet-a", "redis-password")
    assert len(first) == 32 and controller_secret("fleet-a", "redis-password") == first
    assert controller_secret("fleet-b", "redis-password") != first
    assert (tmp_path / "fleet-a" / "redis-password").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "fleet-a").stat().st_mode & 0o777 == 0o700
    with pytest.raises(ValueError, match="not a plain file name"):
        controller_secret("../x", "y")
